"""Weight initialisation shared by the networks."""

import keras


def kernel_initializer(name):
    """``"released"``: normal(0, 0.02) as the released ``init_weights``; else a Keras name.

    The released init suits the full-width network; thin models (few channels) lose their
    signal through the 12 layers with it and learn faster with ``"he_normal"``.
    """
    if name == "released":
        return keras.initializers.RandomNormal(0.0, 0.02)
    return keras.initializers.get(name)
