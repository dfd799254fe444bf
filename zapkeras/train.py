"""Entry point: `python -m zapkeras.train --gin_file=... [flags]`."""

import keras
import tensorflow as tf
from absl import flags
from absl import logging

from zapkeras import cli
from zapkeras import command
from zapkeras import distribute
from zapkeras import multi_worker
from zapkeras import quiet
from zapkeras import runner
from zapkeras.data import files
from zapkeras.outputs import checkpoints
from zapkeras.outputs import console

flags.adopt_module_key_flags(cli)  # --help lists them
FLAGS = cli.FLAGS


def stopped_at(output_dir):
    """Where a stopped run got to and how to resume it (one clause)."""
    last = console.last_progress()
    checkpoint = checkpoints.latest(output_dir)
    kept = (
        f"{output_dir} keeps its last checkpoint ({checkpoint})"
        if checkpoint
        else f"nothing was checkpointed yet in {output_dir}"
    )
    after = f'after "{last}", ' if last else ""
    return f"{after}{kept}; {cli.resume_hint(output_dir)}"


def run(argv=None):
    """Builds the strategy, parses gin, seeds everything and runs."""
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress lines say enough
    with quiet.startup_log():  # TensorFlow looks for GPUs here (cuInit)
        distribute.split_cpu()
        strategy = distribute.make_strategy(FLAGS.strategy)
    cli.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    output_dir = multi_worker.output_dir(
        strategy, FLAGS.output_dir or cli.default_output_dir(FLAGS.gin_file)
    )
    with command.on_stop(lambda: stopped_at(output_dir)):
        return runner.create_runner(
            output_dir=output_dir,
            data_dir=FLAGS.data_dir or files.default_data_dir(),
            seed=FLAGS.seed,
            strategy=strategy,
            experiment=cli.experiment_name(FLAGS.gin_file),
        ).run()


def main(argv):
    cli.main_guard(lambda: run(argv))


def console_main():
    """The `zapkeras-train` console script."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
