"""zapkeras: weight resampling and plasticity research in Keras 3.

Importing zapkeras forces the TensorFlow backend of Keras (every method here
relies on tf.distribute and tf.function) and quiets TensorFlow's C++ start-up
log unless the user asked for it.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN kernels are left at TF's default (on, on Linux x86):
# they make the convnet steps ~2x faster (README "Speed"). They used to be
# off here because of a heap corruption in the narrow warm-start ResNets,
# traced to oneDNN's strided 1x1 conv weight gradient, which
# models/resnet.py now avoids; TF_ENABLE_ONEDNN_OPTS=0 still turns them off.

__version__ = "0.1.0"
