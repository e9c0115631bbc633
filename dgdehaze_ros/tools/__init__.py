"""Tools around the node that need ROS: bag replay through a running node, the node benchmark over DDS and the
QoS frame-loss probe."""
