"""zapkeras: weight resampling and plasticity research in Keras 3.

Importing zapkeras forces the TensorFlow backend of Keras (every method here
relies on tf.distribute and tf.function) and quiets TensorFlow's C++ start-up
log unless the user asked for it.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF 2.21's oneDNN kernels corrupt the heap in conv backprop when the batch
# size changes between steps (seen with ResNet/ViT at 32×32 on this CPU).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
