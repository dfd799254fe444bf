"""One command per study: run a grid of zapkeras runs, then aggregate.

zapkeras is imported here, while `python -m pipelines.<study>` locates the
command, so that TensorFlow's start-up log is quieted for it as for
`python -m zapkeras.<command>` (zapkeras/quiet.py).
"""

import zapkeras  # noqa: F401
