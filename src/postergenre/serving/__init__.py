"""Serving: the registry of blessed models, predict, batch-predict and Grad-CAM."""
