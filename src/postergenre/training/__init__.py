"""Training: one module per concern.

- train.py: `train_model`, the one entry point (CLI, Kubeflow component), dispatching a
  `models` entry to its kind's trainer: scratch.py, transfer.py, linear_probe.py.
- device.py: where and in what precision a step runs (CPU, GPUs), and seeding.
- inputs.py: the posters from the shards (resized, cached, augmented).
- features.py: a frozen base's output for every poster, computed once (the cache).
- loop.py: the Keras fit loop (early stopping, best epoch) and its per-epoch checkpoint;
  checkpoint.py: the checkpoint's folder and fingerprint.
- outputs.py: the model folder a trainer writes, and load_model.
- models.py: the architectures and the weighted loss; backbones.py: the table of
  pretrained backbones; bases.py: a frozen base built from it and its fine-tuning cut;
  lite.py: EfficientNet-Lite0, Lite1 and Lite2 and their offline ImageNet weights.
"""
