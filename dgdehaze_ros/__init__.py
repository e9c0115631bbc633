"""The ROS 2 side of dgdehaze: message conversion, parameters and the lifecycle node, thin over dgdehaze_core."""
