"""The parts of rclpy's API that differ between the supported distributions (Humble, Jazzy, Kilted), each under one
name here."""
from __future__ import annotations

from rclpy.subscription import Subscription

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # ROS 2 Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

MESSAGE_INFO_CALLBACKS = hasattr(Subscription, "CallbackType")
"""Whether a subscription callback taking two arguments gets each message's info (publisher gid, publication
sequence number) as its second: Iron and later. Humble calls every callback with the message alone."""

__all__ = ["MESSAGE_INFO_CALLBACKS", "SubscriptionEventCallbacks"]
