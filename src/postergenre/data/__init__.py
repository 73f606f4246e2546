"""Poster data: images, labels tables, the split, augmentation and the TFRecord
shards."""
