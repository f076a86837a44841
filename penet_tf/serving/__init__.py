"""Serving the exported generator: a gRPC client for TF Serving (``penet_tf.serving.client``).

>>> from penet_tf.serving import InpaintClient
>>> with InpaintClient("localhost:8500", "demo") as client:
...     inpainted = client.inpaint(image, mask)  # uint8 [H, W, 3]
>>> # holes: mask values >= 128, or the 1s of a 0/1 mask
"""

__all__ = ["InpaintClient", "ServingError", "read_image", "read_mask"]


def __getattr__(name):
    # Imported on first use, so `python -m penet_tf.serving.client` runs the module once.
    if name in __all__:
        from penet_tf.serving import client

        return getattr(client, name)
    raise AttributeError(f"module 'penet_tf.serving' has no attribute {name!r}")
