"""Training: the models, their backbones, the fit loop and its checkpoints."""
