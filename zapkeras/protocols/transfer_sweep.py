"""What one transfer protocol's sweep shares: the support/query split, the
learner, the runs × learning rates loop and its records (frati2024 Alg. 2
and 3; docs/reference_codes.md §1.7, §1.8).

The transfer pool is split per class into support (train) and query (test)
images once per seed, so every run, learning rate and condition of a seed
sees the same images; with `resplit_per_run` each run draws a new split
from (seed, run index), as the reference does (it re-splits every run), and
the runs of one index still share it across learning rates. Progress is
saved after every run, so an interrupted sweep resumes.
"""

import os

import numpy as np

from zapkeras import data as data_lib
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.protocols.learner import TransferLearner


class TransferSweep:
    """The data, learner and bookkeeping of one protocol's sweep.

    Args:
      name: the protocol's name ('sequential', 'iid').
      model, pool, context: the pretrained model, the transfer images and
        the run context.
      train_per_class: support images per class.
      resplit_per_run: a new support/query split for every run index.
      metrics: what `evaluate` reports: 'accuracy' and optionally
        'top5_accuracy'.
      **learner: `TransferLearner`'s optimizer and linear_probe.
    """

    def __init__(
        self,
        name,
        model,
        pool,
        context,
        train_per_class,
        *,
        resplit_per_run=False,
        metrics=("accuracy",),
        **learner,
    ):
        self.name, self.context, self.metrics = name, context, metrics
        self.train_per_class = train_per_class
        outputs = max(model.get_layer("classifier").units, pool.num_classes)
        self.learner = TransferLearner(model, outputs, **learner)
        self.num_classes = pool.num_classes
        self._pool = None
        if resplit_per_run:
            # Inputs (linear probe: features) of the whole pool, computed
            # once; each run's split then only takes indices.
            self._pool = _with_images(pool, self.learner.inputs(pool.images))
            self.resplit(0)
        else:
            support, query = data_lib.split_per_class(
                pool, train_per_class, seed=context.seed
            )
            self.support = _with_images(
                support, self.learner.inputs(support.images)
            )
            self.query = _with_images(query, self.learner.inputs(query.images))
        self._trajectory_key = self._trajectory = None

    def resplit(self, run):
        """Support and query of run `run`, from seed (context.seed, run)."""
        self.support, self.query = data_lib.split_per_class(
            self._pool, self.train_per_class, seed=(self.context.seed, run)
        )
        self._trajectory_key = self._trajectory = None

    def trajectory(self, order):
        """{split: (inputs, labels)} of the classes in `order`, gathered
        once per trajectory and reused by each of its evaluations."""
        key = tuple(int(c) for c in order)
        if self._trajectory_key != key:
            self._trajectory_key = key
            self._trajectory = {}
            for split, data in (("train", self.support), ("test", self.query)):
                keep = np.isin(data.labels, order)
                self._trajectory[split] = data.images[keep], data.labels[keep]
        return self._trajectory

    def evaluate(self, order, seen):
        """Per-class accuracies on the trajectory's classes, in order: over
        the `seen` first and over all; `<split>_top5_accuracy_all` too when
        asked (the reference's i.i.d. top-5)."""
        results = {}
        for split, (x, labels) in self.trajectory(order).items():
            scores = self.learner.scores(x, labels, order)
            accuracy = scores["accuracy"]
            results[f"{split}_accuracy_seen"] = float(accuracy[:seen].mean())
            results[f"{split}_accuracy_all"] = float(accuracy.mean())
            for metric in self.metrics:
                if metric != "accuracy":
                    key = f"{split}_{metric}_all"
                    results[key] = float(scores[metric].mean())
            results[f"per_class_{split}_accuracy"] = accuracy
        return results

    def sweep(self, learning_rates, runs, classes, run_fn):
        """Runs run_fn(order, rng, name, advance) per (rate, run), where
        advance(fraction) tells the progress bar how much of the run is
        done; returns the summary."""
        path = os.path.join(
            self.context.checkpoint_dir("transfer"), f"{self.name}.json"
        )
        progress = files.read_json(path, {})
        cells = [(lr, run) for lr in learning_rates for run in range(runs)]
        done = sum(f"{lr:g}/{run}" in progress for lr, run in cells)
        bar = console.Progress(
            f"transfer/{self.name}[{self.context.label}]",
            len(cells),
            "run",
            start=done,
        )
        with bar:
            for lr, run in cells:
                key = f"{lr:g}/{run}"
                if key in progress:
                    continue
                rng = np.random.default_rng([self.context.seed, run])
                order = rng.choice(self.num_classes, classes, replace=False)
                self.learner.reset(lr, seed=int(rng.integers(2**31)))
                if self._pool is not None:
                    self.resplit(run)
                result = run_fn(
                    order,
                    rng,
                    f"lr_{lr:g}_run_{run}",
                    lambda fraction: bar.advance(done + fraction),
                )
                progress[key] = _record(result, order)
                files.write_json(path, progress)
                done += 1
                bar.update(
                    done,
                    {"test acc": result["curve"][-1]["test_accuracy_all"]},
                    at=f"lr {lr:g} run {run + 1}/{runs}",
                )
        runs_by_lr = {
            f"{lr:g}": [progress[f"{lr:g}/{r}"] for r in range(runs)]
            for lr in learning_rates
        }
        files.write_json(
            self.context.curves_path(f"transfer_{self.name}.json"), runs_by_lr
        )
        self.learner.restore()  # later protocols see the pretrained body
        summary = summarise(runs_by_lr, self.metrics)
        self._log(runs_by_lr, summary["best_lr"])
        self.best_curve = runs_by_lr[f"{summary['best_lr']:g}"]
        return summary

    def _log(self, runs_by_lr, best_lr):
        for lr, runs in runs_by_lr.items():
            tags = [f"transfer/{self.name}/lr_{lr}"]
            if float(lr) == best_lr:
                tags.append(f"transfer/{self.name}/best_lr")
            for i, point in enumerate(runs[0]["curve"]):
                mean = {
                    k: np.mean([r["curve"][i][k] for r in runs])
                    for k in point
                    if k not in ("step", "epoch")
                }
                for tag in tags:
                    self.context.writer.scalars(tag, mean, point["step"])


def _record(result, order):
    """A run's result as saved: the class order and the final per-class
    accuracies; the other curve points keep only the means."""
    final = result["curve"][-1]
    result["class_order"] = [int(c) for c in order]
    for split in ("train", "test"):
        result[f"per_class_{split}_accuracy"] = [
            float(a) for a in final.pop(f"per_class_{split}_accuracy")
        ]
    for point in result["curve"]:
        for split in ("train", "test"):
            point.pop(f"per_class_{split}_accuracy", None)
    return result


def summary_keys(metrics=("accuracy",)):
    """The numbers `summarise` gives per learning rate."""
    return tuple(
        f"{split}_{metric}{suffix}"
        for metric in metrics
        for split in ("test", "train")
        for suffix in ("", "_std")
    )


def summarise(runs_by_lr, metrics=("accuracy",)):
    """Mean and std over runs of the final `metrics` per rate; the best
    rate by mean final test accuracy (docs/reference_codes.md §1.7)."""
    by_lr = {}
    for lr, runs in runs_by_lr.items():
        by_lr[lr] = {}
        for metric in metrics:
            for split in ("test", "train"):
                final = [r["curve"][-1][f"{split}_{metric}_all"] for r in runs]
                by_lr[lr][f"{split}_{metric}"] = float(np.mean(final))
                by_lr[lr][f"{split}_{metric}_std"] = float(np.std(final))
    best = max(by_lr, key=lambda lr: by_lr[lr]["test_accuracy"])
    return {**by_lr[best], "best_lr": float(best), "by_lr": by_lr}


def _with_images(images, new_images):
    return data_lib.LabeledImages(
        images=np.asarray(new_images),
        labels=images.labels,
        class_names=images.class_names,
    )
