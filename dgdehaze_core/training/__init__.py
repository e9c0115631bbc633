"""Self-supervised training of the depth-guided dehazer from unpaired clear and hazy images.

`recipe` reads a YAML recipe, `datasets` serves random crops from unpaired folders and pairs validation folders,
`priors` holds the physics priors (dark channel teacher, prior depth fields), `losses` one function per loss, and
`trainer` the loop (AMP, seeds, atomic checkpoints, resume, CSV logs, periodic validation).
"""
