"""Registers everything a gin file may name (tf3d's gin_imports pattern).

Importing this module imports every module that declares configurables and
registers the Keras classes configs refer to. `gin.tf` is not used: it is
broken on TF ≥ 2.16 (gin/tf/utils.py subclasses the removed
tf.estimator.SessionRunHook). Callbacks and Keras classes
are registered here, not decorated, so the library stays usable without gin.
"""

import keras

import gin
from zapkeras import compat
from zapkeras import data  # noqa: F401
from zapkeras import models  # noqa: F401
from zapkeras import optimizers
from zapkeras import runner  # noqa: F401
from zapkeras.data import warm_start  # noqa: F401
from zapkeras.methods import cbp
from zapkeras.methods import hare_tortoise
from zapkeras.methods import redo
from zapkeras.methods import regularizers
from zapkeras.methods import shrink_perturb
from zapkeras.methods import swr
from zapkeras.methods import zapping
from zapkeras.protocols import continual  # noqa: F401
from zapkeras.protocols import pretrain  # noqa: F401
from zapkeras.protocols import transfer  # noqa: F401
from zapkeras.protocols import zap_divergence  # noqa: F401

compat.warn_if_unsupported()

for _optimizer in (
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.SGD,
    keras.optimizers.RMSprop,
):
    gin.external_configurable(_optimizer, module="keras.optimizers")
# PyTorch's Adam (docs/reference_codes.md §1.13): `... .optimizer = @TorchAdam`.
gin.external_configurable(optimizers.TorchAdam, module="zapkeras.optimizers")

for _callback in (
    zapping.Zapping,
    swr.SelectiveWeightReinit,
    cbp.ContinualBackprop,
    redo.ReDo,
    shrink_perturb.ShrinkAndPerturb,
    shrink_perturb.HeadReset,
    hare_tortoise.HareTortoise,
    regularizers.RegenerativeL2,
    regularizers.SpectralDecoupling,
):
    gin.external_configurable(_callback, module="zapkeras")
