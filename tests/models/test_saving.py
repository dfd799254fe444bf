"""Every zapkeras model saves as a `.keras` file and loads back in Keras'
safe mode (no Lambda layers, no pickled code), computing the same logits."""

import keras
import numpy as np
import pytest

from zapkeras import models

BUILDERS = {
    "frati_convnet": lambda: models.frati_convnet(3, width=4),
    "anml": lambda: models.anml(3, width=4, nm_width=4),
    "oml": lambda: models.oml(3, width=4, hidden=8),
    "mlp": lambda: models.mlp(
        3, input_shape=(6,), width=8, layer_norm="reparam"
    ),
    "mlp_crelu": lambda: models.mlp(
        3, input_shape=(6,), width=8, activation="crelu"
    ),
    "resnet18": lambda: models.resnet18(3, input_shape=(8, 8, 3), width=2),
    "vgg16": lambda: models.vgg16(3, input_shape=(32, 32, 3)),
    "vit": lambda: models.vit(
        3, image_size=8, patch_size=4, dim=12, depth=1, heads=2, mlp_dim=8
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_model_loads_in_safe_mode(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    shape = (2, *model.input.shape[1:])
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    np.testing.assert_allclose(
        loaded(x, training=False),
        model(x, training=False),
        rtol=1e-5,
        atol=1e-6,
    )
