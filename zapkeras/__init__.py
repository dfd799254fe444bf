"""zapkeras: weight resampling and plasticity research in Keras 3.

Importing zapkeras forces the TensorFlow backend of Keras (every method here
relies on tf.distribute and tf.function) and quiets TensorFlow's C++ start-up
log unless the user asked for it.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
