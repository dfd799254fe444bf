"""The zapkeras models; every one names its logits layer `classifier`."""

import keras

from zapkeras.errors import UsageError
from zapkeras.models.augment import augmentation
from zapkeras.models.convnet import frati_convnet
from zapkeras.models.layers import CReLU
from zapkeras.models.layers import InstanceNorm
from zapkeras.models.layers import ReparamLayerNorm
from zapkeras.models.meta_learners import anml
from zapkeras.models.meta_learners import oml
from zapkeras.models.mlp import mlp
from zapkeras.models.resnet import resnet18
from zapkeras.models.vgg import vgg16
from zapkeras.models.vit import vit

__all__ = [
    "CReLU",
    "InstanceNorm",
    "ReparamLayerNorm",
    "anml",
    "augmentation",
    "feature_extractor",
    "frati_convnet",
    "mlp",
    "oml",
    "resnet18",
    "vgg16",
    "vit",
]


def feature_extractor(model):
    """The body of `model`: its input → the input of layer `classifier`."""
    try:
        head = model.get_layer("classifier")
    except ValueError:
        raise UsageError(
            f"model {model.name!r} has no layer named 'classifier'; name "
            "its output Dense layer 'classifier'."
        ) from None
    return keras.Model(model.input, head.input, name=f"{model.name}_features")
