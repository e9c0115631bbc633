"""Files in and out: images and video, camera frames as ROS encodes them, checkpoints, figure tables and
atomic writes (a reader never sees half a file)."""
