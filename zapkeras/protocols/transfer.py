"""Transfer protocols of frati2024: sequential (Alg. 2) and i.i.d. (Alg. 3).

Both give a pretrained model a fresh head (Kaiming-normal, zero bias) and
train it — the head alone (linear probing) or the whole model — on
`classes` transfer classes never seen in pretraining, split per class into
support (train) and held-out query (test) images. Each learning rate of the
sweep is repeated `runs` times with a new class order and head (shared
across rates, so rates are compared on the same draws); the best rate by
mean final test accuracy is reported (docs/reference_codes.md §1.7-1.8).

- Sequential: classes one after another, one example per optimizer step,
  each example once per epoch; evaluated after the first class, every
  `eval_every` classes and at the end, per class, on support and query
  images of the classes seen and of all classes of the trajectory. With
  `task_loss_every` > 0 the loss of every task (class) on its support images
  is recorded every that many steps: frati2025 §2.3's per-task losses, an
  array [points, tasks] per run.
- i.i.d.: shuffled mini-batches of all support images for `epochs` epochs
  (reference default 1), evaluated every `eval_every_steps` steps.

Progress is saved after every run, so an interrupted sweep resumes.
"""

import os

import keras
import numpy as np

import gin
from zapkeras import data as data_lib
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.outputs import plots
from zapkeras.protocols import base as protocol_base
from zapkeras.protocols.learner import TransferLearner


class _Transfer:
    """The data, learner and bookkeeping one protocol's sweep shares."""

    def __init__(self, name, model, pool, context, train_per_class, **kw):
        self.name = name
        self.context = context
        support, query = data_lib.split_per_class(
            pool, train_per_class, seed=context.seed
        )
        outputs = max(model.get_layer("classifier").units, pool.num_classes)
        self.learner = TransferLearner(model, outputs, **kw)
        self.support = _with_images(
            support, self.learner.inputs(support.images)
        )
        self.query = _with_images(query, self.learner.inputs(query.images))
        self.num_classes = pool.num_classes
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
        """Per-class accuracies on the trajectory's classes, in order."""
        results = {}
        for split, (x, labels) in self.trajectory(order).items():
            accuracy, _ = self.learner.per_class(x, labels, order)
            results[f"{split}_accuracy_seen"] = float(accuracy[:seen].mean())
            results[f"{split}_accuracy_all"] = float(accuracy.mean())
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
                result = run_fn(
                    order,
                    rng,
                    f"lr_{lr:g}_run_{run}",
                    lambda fraction: bar.advance(done + fraction),
                )
                final = result["curve"][-1]
                result["class_order"] = [int(c) for c in order]
                for split in ("train", "test"):
                    result[f"per_class_{split}_accuracy"] = [
                        float(a)
                        for a in final.pop(f"per_class_{split}_accuracy")
                    ]
                for point in result["curve"]:
                    for split in ("train", "test"):
                        point.pop(f"per_class_{split}_accuracy", None)
                progress[key] = result
                files.write_json(path, progress)
                done += 1
                bar.update(
                    done,
                    {"test acc": final["test_accuracy_all"]},
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
        summary = _summarise(runs_by_lr)
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


_SUMMARY_KEYS = (
    "test_accuracy",
    "test_accuracy_std",
    "train_accuracy",
    "train_accuracy_std",
)


def _summarise(runs_by_lr):
    by_lr = {}
    for lr, runs in runs_by_lr.items():
        test = [r["curve"][-1]["test_accuracy_all"] for r in runs]
        train = [r["curve"][-1]["train_accuracy_all"] for r in runs]
        by_lr[lr] = {
            "test_accuracy": float(np.mean(test)),
            "test_accuracy_std": float(np.std(test)),
            "train_accuracy": float(np.mean(train)),
            "train_accuracy_std": float(np.std(train)),
        }
    best = max(by_lr, key=lambda lr: by_lr[lr]["test_accuracy"])
    return {**by_lr[best], "best_lr": float(best), "by_lr": by_lr}


def eval_points(num_classes, eval_every):
    """Class counts after which the learner is evaluated (1-based)."""
    points = {1, num_classes}
    points.update(range(eval_every, num_classes + 1, eval_every))
    return sorted(points)


_LEARNING_RATES = settings.LearningRates(example=(1e-3, 4e-4))


class _Sweep(protocol_base.Protocol):
    """A transfer protocol: a sweep of learning rates × runs on the pool.

    `learning_rates`, `runs` and `classes` are TRANSFER_LRS, TRANSFER_RUNS
    and TRANSFER_CLASSES; `linear_probe=False` trains the whole model;
    `optimizer` is a class (reference: Adam; frati2025 also SGD).
    """

    name = None

    def __init__(
        self,
        learning_rates,
        runs,
        classes,
        train_per_class,
        linear_probe,
        optimizer,
    ):
        self.learning_rates, self.runs = learning_rates, runs
        self.classes, self.train_per_class = classes, train_per_class
        self.linear_probe, self.optimizer = linear_probe, optimizer
        self.best_curve = None

    def check(self, data):
        pool = data.transfer
        if not 1 <= self.classes <= pool.num_classes:
            raise UsageError(
                f"TRANSFER_CLASSES = {self.classes} but the transfer set "
                f"has {pool.num_classes} classes; choose "
                f"1..{pool.num_classes}."
            )

    def result_keys(self):
        return [
            *_SUMMARY_KEYS,
            "best_lr",
            *(
                f"by_lr.{lr:g}.{key}"
                for lr in self.learning_rates
                for key in _SUMMARY_KEYS
            ),
        ]

    def columns(self, result):
        """Best-rate test accuracy with n, and whether that rate is at an
        edge of the sweep (the best may lie beyond it)."""
        best, rates = result["best_lr"], sorted(self.learning_rates)
        where = ""
        if len(rates) > 1 and best in (rates[0], rates[-1]):
            edge = "smallest" if best == rates[0] else "largest"
            where = f", the {edge} swept"
        cell = console.mean_std(
            result["test_accuracy"], result["test_accuracy_std"], self.runs
        )
        return {"transfer test acc (best lr)": f"{cell} (lr {best:g}{where})"}

    def figures(self, runs):
        """transfer_<name>: test accuracy, mean ± std over the transfer
        runs at each condition's best rate (one plot per curve file)."""
        curves = {c: p.best_curve for c, p in runs.items()}
        return {f"transfer_{self.name}": plots.transfer_curves(curves)}

    def __call__(self, model, data, context):
        """Runs the sweep from `model`'s weights; returns the summary."""
        self.check(data)
        t = _Transfer(
            self.name,
            model,
            data.transfer,
            context,
            self.train_per_class,
            optimizer=self.optimizer,
            linear_probe=self.linear_probe,
        )
        summary = t.sweep(
            self.learning_rates,
            self.runs,
            self.classes,
            self._run_fn(t, context),
        )
        self.best_curve = t.best_curve
        return summary


@gin.configurable("sequential_transfer")
@settings.declared("sequential_transfer")
class SequentialTransfer(_Sweep):
    """frati2024 Alg. 2 (module docstring); gin: `sequential_transfer`.

    Args: as `_Sweep`, and `eval_every` (classes between evaluations),
    `epochs`, `task_loss_every` (frati2025 §2.3's per-task losses, 0: off).
    """

    name = "sequential"

    def __init__(
        self,
        *,
        learning_rates: _LEARNING_RATES = (1e-3,),
        runs: settings.PositiveInt = 10,
        classes: settings.PositiveInt = 600,
        train_per_class: settings.PositiveInt = 15,
        eval_every: settings.PositiveInt = 50,
        epochs: settings.PositiveInt = 1,
        linear_probe: settings.Bool = True,
        optimizer=keras.optimizers.Adam,
        task_loss_every: settings.NonNegativeInt = 0,
    ):
        super().__init__(
            learning_rates,
            runs,
            classes,
            train_per_class,
            linear_probe,
            optimizer,
        )
        self.eval_every, self.epochs = eval_every, epochs
        self.task_loss_every = task_loss_every

    def _run_fn(self, t, context):
        classes, epochs = self.classes, self.epochs
        task_loss_every = self.task_loss_every
        evals = eval_points(classes, self.eval_every)

        def run(order, rng, name, advance):
            del rng
            x, y = data_lib.sequential_stream(t.support, order)
            ends = np.cumsum(np.bincount(t.support.labels)[order])
            at_eval = {int(ends[s - 1]): s for s in evals}
            marks = set(at_eval)
            if task_loss_every:
                marks.update(
                    range(task_loss_every, len(y) + 1, task_loss_every)
                )
            curve, losses = [], []
            for epoch in range(epochs):
                done = 0
                for mark in sorted(marks):
                    t.learner.train(x[done:mark], y[done:mark], 1)
                    done = mark
                    step = epoch * len(y) + mark
                    if task_loss_every and mark % task_loss_every == 0:
                        x_train, y_train = t.trajectory(order)["train"]
                        losses.append(
                            t.learner.per_class(x_train, y_train, order)[1]
                        )
                    if mark in at_eval:
                        seen = at_eval[mark]
                        curve.append(
                            {
                                "epoch": epoch,
                                "step": step,
                                "classes_seen": seen,
                                **t.evaluate(order, seen),
                            }
                        )
                        advance(step / (epochs * len(y)))
            if losses:
                _save_task_losses(
                    context, name, np.stack(losses), task_loss_every
                )
            return {"curve": curve}

        return run


@gin.configurable("iid_transfer")
@settings.declared("iid_transfer")
class IidTransfer(_Sweep):
    """frati2024 Alg. 3: mini-batch fine-tuning; gin: `iid_transfer`.

    Args: as `_Sweep`, and `epochs`, `batch_size`, `eval_every_steps`.
    """

    name = "iid"

    def __init__(
        self,
        *,
        learning_rates: _LEARNING_RATES = (1e-3,),
        runs: settings.PositiveInt = 10,
        classes: settings.PositiveInt = 600,
        train_per_class: settings.PositiveInt = 15,
        epochs: settings.PositiveInt = 1,
        batch_size: settings.PositiveInt = 256,
        eval_every_steps: settings.PositiveInt = 5,
        linear_probe: settings.Bool = True,
        optimizer=keras.optimizers.Adam,
    ):
        super().__init__(
            learning_rates,
            runs,
            classes,
            train_per_class,
            linear_probe,
            optimizer,
        )
        self.epochs, self.batch_size = epochs, batch_size
        self.eval_every_steps = eval_every_steps

    def _run_fn(self, t, context):
        del context
        epochs, batch_size = self.epochs, self.batch_size
        chunk = batch_size * self.eval_every_steps

        def run(order, rng, name, advance):
            del name
            examples = np.flatnonzero(np.isin(t.support.labels, order))
            x, y = t.support.images, t.support.labels
            curve, step, seen = [], 0, 0
            for epoch in range(epochs):
                shuffled = rng.permutation(examples)
                for start in range(0, len(shuffled), chunk):
                    part = shuffled[start : start + chunk]
                    t.learner.train(x[part], y[part], batch_size)
                    step += -(-len(part) // batch_size)
                    curve.append(
                        {
                            "epoch": epoch,
                            "step": step,
                            **t.evaluate(order, len(order)),
                        }
                    )
                    seen += len(part)
                    advance(seen / (epochs * len(examples)))
            return {"curve": curve}

        return run


def _save_task_losses(context, name, losses, every):
    """frati2025 §2.3: [points, tasks] array, tasks in training order."""
    path = context.curves_path(os.path.join("task_losses", f"{name}.npy"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, losses)
    png = plots.task_losses(losses, every)
    with open(path[: -len(".npy")] + ".png", "wb") as f:
        f.write(png)
    context.writer.image(f"transfer/sequential/task_losses/{name}", png)
    # One tag per curve: the mean over tasks at each step, and the final
    # loss per task at step = task number (from 1, in training order).
    for point, row in enumerate(losses):
        context.writer.scalars(
            f"transfer/sequential/{name}",
            {"mean_task_loss": np.mean(row)},
            (point + 1) * every,
        )
    for task, loss in enumerate(losses[-1]):
        context.writer.scalars(
            f"transfer/sequential/{name}", {"task_loss": loss}, task + 1
        )


def _with_images(images, new_images):
    return data_lib.LabeledImages(
        images=np.asarray(new_images),
        labels=images.labels,
        class_names=images.class_names,
    )
