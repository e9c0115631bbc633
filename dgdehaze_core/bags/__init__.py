"""Recorded drives: reading and writing ROS 2 bags without ROS, evaluating the node's work over a bag and the
HTML report."""
