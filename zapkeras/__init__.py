"""zapkeras: weight resampling and plasticity research in Keras 3.

Importing zapkeras changes no environment variable: its commands set what
they need before TensorFlow loads (zapkeras/environment.py), which is
while Python locates `python -m zapkeras.<command>` (or a pipeline) or
starts a `zapkeras-*` console script. zapkeras runs on Keras' TensorFlow
backend; another KERAS_BACKEND is an ImportError.
"""

import sys

from zapkeras import environment

environment.check_backend()
if environment.is_command(sys.argv):
    environment.prepare()

__version__ = "0.1.0"
