"""Hyperparameter sweeps over gin bindings with keras-tuner (`zapkeras.tune`).

`params` parses `--tune_param`, `tuner` runs each trial as its own
`python -m zapkeras.train` process, `report` writes what a sweep found.
"""
