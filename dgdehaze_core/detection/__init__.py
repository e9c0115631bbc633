"""Object detection beside dehazing: the Ultralytics detector, its safe checkpoint loading, exports and float
rebuild, detection on a schedule, and the fusion of raw-frame and dehazed-frame boxes."""
