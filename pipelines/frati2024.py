"""frati2024 / frati2025 reproduction: six Omniglot pretraining conditions
× seeds, each transferred sequentially and i.i.d., in one table.

    python -m pipelines.frati2024 --data_dir=DATA_DIR --scale=ci --seeds=3

prints (and writes to OUTPUT_DIR/table.md and summary.json) the table of
frati2024 Fig. 3 / frati2025 Table 1: pretraining validation accuracy and
transfer test accuracy, mean ± std over seeds, and two-sided Mann-Whitney U
p-values of each zapped condition against its unzapped control. Runs that
finished are skipped, so rerunning resumes the grid.
"""

import json
import os
import sys

from absl import app
from absl import flags

from pipelines import grid

CONDITIONS = ("iid", "iid_zap", "asb", "asb_zap", "meta_asb", "meta_asb_zap")
PAIRS = (("iid", "iid_zap"), ("asb", "asb_zap"), ("meta_asb", "meta_asb_zap"))
SCALES = {
    # Minutes on a 2-core CPU with the real Omniglot subset of shared/.
    "ci": (
        "WIDTH = 32",
        "PRETRAIN_CLASSES = None",
        "PRETRAIN_EPOCHS = 8",
        "PRETRAIN_EPISODES = 600",
        "asb_pretraining.episodes_per_epoch = 100",
        "TRANSFER_CLASSES = 30",
        "TRANSFER_RUNS = 3",
        "TRANSFER_LRS = (0.003, 0.001, 0.0003)",
        "sequential_transfer.eval_every = 10",
        "iid_transfer.batch_size = 32",
    ),
    # An hour or so on a CPU, all of Omniglot at reduced width.
    "small": (
        "WIDTH = 64",
        "PRETRAIN_EPISODES = 3000",
        "TRANSFER_CLASSES = 200",
        "TRANSFER_RUNS = 3",
    ),
    "paper": (),
}
KEYS = {
    "pretrain val acc": "pretrain.val_accuracy",
    "sequential transfer test acc": "transfer.sequential.test_accuracy",
    "i.i.d. transfer test acc": "transfer.iid.test_accuracy",
}

flags.DEFINE_string("data_dir", None, "Holds omniglot/ (SPEC §3).")
flags.DEFINE_string("output_dir", "runs/frati2024", "Where the grid goes.")
flags.DEFINE_enum("scale", "ci", list(SCALES), "Size of every run.")
flags.DEFINE_integer("seeds", 3, "Seeds per condition (0..seeds-1).")
flags.DEFINE_list("conditions", list(CONDITIONS), "Conditions to run.")
flags.DEFINE_multi_string("gin_param", [], "Extra bindings for every run.")
FLAGS = flags.FLAGS


def runs(conditions, seeds, scale, extra=()):
    return [
        grid.Run(
            name=condition,
            gin_files=(f"gin/omniglot/{condition}.gin",),
            seed=seed,
            params=SCALES[scale] + tuple(extra),
        )
        for condition in conditions
        for seed in range(seeds)
    ]


def summarise(all_runs, root):
    """{condition: {metric: [value per seed]}} from the runs' results."""
    values = {}
    for run in all_runs:
        results = grid.load(run, root)
        per_metric = values.setdefault(run.name, {k: [] for k in KEYS})
        for label, key in KEYS.items():
            per_metric[label].append(grid.lookup(results, key))
    return values


def table(values):
    rows = [
        [name] + [grid.mean_std(metrics[label]) for label in KEYS]
        for name, metrics in values.items()
    ]
    text = grid.markdown_table(["condition", *KEYS], rows)
    tests = []
    for control, zapped in PAIRS:
        if control in values and zapped in values:
            p = [
                grid.mann_whitney(values[zapped][label], values[control][label])
                for label in KEYS
            ]
            tests.append(
                [f"{zapped} vs {control}"]
                + ["–" if v is None else f"{v:.3g}" for v in p]
            )
    if tests:
        text += "\n\nMann-Whitney U (two-sided) p-values\n\n"
        text += grid.markdown_table(["pair", *KEYS], tests)
    return text


def main(argv):
    del argv
    unknown = set(FLAGS.conditions) - set(CONDITIONS)
    if unknown:
        print(
            f"frati2024: error: --conditions has {sorted(unknown)}; choose "
            f"from {', '.join(CONDITIONS)}.",
            file=sys.stderr,
        )
        sys.exit(2)
    all_runs = runs(FLAGS.conditions, FLAGS.seeds, FLAGS.scale, FLAGS.gin_param)
    failed = grid.run_all(all_runs, FLAGS.output_dir, FLAGS.data_dir)
    finished = [r for r in all_runs if r not in failed]
    values = summarise(finished, FLAGS.output_dir)
    text = table(values)
    print("\n" + text)
    with open(os.path.join(FLAGS.output_dir, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(FLAGS.output_dir, "summary.json"), "w") as f:
        json.dump({"scale": FLAGS.scale, "values": values}, f, indent=1)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
