"""zapkeras: weight resampling and plasticity research in Keras 3.

Importing zapkeras forces the TensorFlow backend of Keras (every method here
relies on tf.distribute and tf.function) and quiets TensorFlow's C++ start-up
log unless the user asked for it (TF_CPP_MIN_LOG_LEVEL below 2, or
--verbosity; zapkeras/quiet.py) when it runs as a command (`python -m
zapkeras.<command>` or a pipeline, which import it before TensorFlow); a
library import installs no import hook.
"""

import os
import platform
import sys

from zapkeras import quiet

os.environ["KERAS_BACKEND"] = "tensorflow"
if not os.environ.get(quiet.VARIABLE):  # TensorFlow reads it at run time
    os.environ[quiet.VARIABLE] = str(min(quiet.level(), 2))
if sys.argv[:1] == ["-m"]:  # `python -m <command>`: quiet its start-up
    quiet.install()
# TensorFlow's oneDNN kernels make the convnet steps ~2x faster on x86 CPUs
# (README "Speed"), but TF 2.21 turns them on by default only on CPUs it
# deems suited (not, for instance, on AVX2-only AMD EPYC), so zapkeras asks
# for them on x86; TF_ENABLE_ONEDNN_OPTS=0 still turns them off. They were
# off here until the heap corruption in the narrow warm-start ResNets was
# traced to oneDNN's strided 1x1 conv weight gradient (models/resnet.py).
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
