"""dgdehaze core: depth-guided dehazing with no ROS import; `dgdehaze_ros` is a thin layer over it.

One folder per concern (docs/ARCHITECTURE.md): `physics` (scattering model, dark channel, visibility), `models`
(the networks), `training`, `inference` (pipeline, frame chain, backends, export), `detection`, `evaluation`,
`benchmarks`, `bags`, `datasets`, `io`, and `commands` behind the `dgdehaze` command line (`cli`).
"""
__version__ = "0.1.0"
