"""Input pipelines: images (folders, file lists, TFDS) and hole masks."""
