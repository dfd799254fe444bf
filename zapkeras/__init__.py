"""zapkeras: weight resampling and plasticity research in Keras 3.

Importing zapkeras forces the TensorFlow backend of Keras (every method here
relies on tf.distribute and tf.function) and quiets TensorFlow's C++ start-up
log unless the user asked for it.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN kernels stay on (its default on x86): they made the
# conv-net steps ~2x faster here (issue 7). They were once turned off after a
# heap corruption seen with changing batch sizes; the suite and a stress run
# of ResNet fit/evaluate over changing batch sizes now pass with them on.
# TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns them off.

__version__ = "0.1.0"
