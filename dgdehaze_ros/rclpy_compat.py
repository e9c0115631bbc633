"""The parts of rclpy's API that differ between the supported distributions (Humble, Jazzy, Kilted), each under one
name here."""
from __future__ import annotations

from rclpy.node import Node
from rclpy.subscription import Subscription

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # ROS 2 Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

MESSAGE_INFO_CALLBACKS = hasattr(Subscription, "CallbackType")
"""Whether a subscription callback taking two arguments gets each message's info (publisher gid, publication
sequence number) as its second: Iron and later. Humble calls every callback with the message alone."""

PRE_SET_PARAMETERS_CALLBACKS = hasattr(Node, "add_pre_set_parameters_callback")
"""Whether a node can change the parameters of a set before rclpy checks their types (Iron and later): Humble
refuses `ros2 param set ... camera_height 2` (an integer for a double) before any callback sees it."""


def publisher_count(node: Node, subscription: Subscription) -> int:
    """The publishers `subscription` is matched with (`Subscription.get_publisher_count`, Iron and later); on Humble,
    whose subscriptions cannot say, the publishers of its topic in `node`'s view of the ROS graph, which discovery
    may show a moment before they are matched."""
    if hasattr(subscription, "get_publisher_count"):
        return subscription.get_publisher_count()
    return node.count_publishers(subscription.topic_name)


__all__ = ["MESSAGE_INFO_CALLBACKS", "PRE_SET_PARAMETERS_CALLBACKS", "SubscriptionEventCallbacks", "publisher_count"]
