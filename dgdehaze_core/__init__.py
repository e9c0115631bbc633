"""dgdehaze core: depth-guided dehazing with no ROS import.

The physics (`scattering`, `dark_channel`), the networks (`models`), training, the inference pipeline,
the backends, detection, metrics and the `dgdehaze` command line live here; `dgdehaze_ros` stays a thin layer
over them.
"""
__version__ = "0.1.0"
