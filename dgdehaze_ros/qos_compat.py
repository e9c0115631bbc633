"""rclpy's QoS event API under the name it has on every supported distro (Humble: rclpy.qos_event)."""
from __future__ import annotations

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # ROS 2 Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

__all__ = ["SubscriptionEventCallbacks"]
