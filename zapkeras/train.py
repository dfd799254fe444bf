"""Entry point: `python -m zapkeras.train --gin_file=... [flags]`."""

import keras
import tensorflow as tf
from absl import app
from absl import logging

from zapkeras import cli
from zapkeras import distribute
from zapkeras import multi_worker
from zapkeras import runner

FLAGS = cli.FLAGS


def run(argv=None):
    """Builds the strategy, parses gin, seeds everything and runs."""
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress lines say enough
    distribute.split_cpu()
    strategy = distribute.make_strategy(FLAGS.strategy)
    cli.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    return runner.create_runner(
        output_dir=multi_worker.output_dir(
            strategy,
            FLAGS.output_dir or cli.default_output_dir(FLAGS.gin_file),
        ),
        data_dir=FLAGS.data_dir or cli.default_data_dir(),
        seed=FLAGS.seed,
        strategy=strategy,
        experiment=cli.experiment_name(FLAGS.gin_file),
    ).run()


def main(argv):
    cli.main_guard(lambda: run(argv))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
