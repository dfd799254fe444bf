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
  (reference default 1), evaluated every `eval_every_steps` steps (and,
  with `eval_first_step`, after the first, as the reference), reporting
  top-5 accuracy beside top-1 (the reference's i.i.d. metrics).

Reference-exact options (docs/reference_codes.md §1.7, §1.8, §1.13):
`resplit_per_run` (a new support/query split per run), `eval_first_step`,
and `optimizer = @TorchAdam` (PyTorch's Adam). Progress is saved after every
run, so an interrupted sweep resumes (`transfer_sweep`).
"""

import os

import keras
import numpy as np

import gin
from zapkeras import data as data_lib
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import plots
from zapkeras.protocols import base as protocol_base
from zapkeras.protocols import transfer_sweep


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
    `optimizer` is a class (reference: PyTorch's Adam, `TorchAdam`; default
    Keras' Adam; frati2025 also SGD). `resplit_per_run` draws each run's
    support/query split of every class anew from (seed, run index), as the
    reference does; default False: one split per seed, so conditions and
    learning rates compare on identical images and differences are not
    split noise (runs of one index share their split across rates either
    way).
    """

    name = None
    metrics = ("accuracy",)

    def __init__(
        self,
        learning_rates,
        runs,
        classes,
        train_per_class,
        linear_probe,
        optimizer,
        resplit_per_run,
    ):
        self.learning_rates, self.runs = learning_rates, runs
        self.classes, self.train_per_class = classes, train_per_class
        self.linear_probe, self.optimizer = linear_probe, optimizer
        self.resplit_per_run = resplit_per_run
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
        keys = transfer_sweep.summary_keys(self.metrics)
        return [
            *keys,
            "best_lr",
            *(
                f"by_lr.{lr:g}.{key}"
                for lr in self.learning_rates
                for key in keys
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
        t = transfer_sweep.TransferSweep(
            self.name,
            model,
            data.transfer,
            context,
            self.train_per_class,
            resplit_per_run=self.resplit_per_run,
            metrics=self.metrics,
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
        resplit_per_run: settings.Bool = False,
    ):
        super().__init__(
            learning_rates,
            runs,
            classes,
            train_per_class,
            linear_probe,
            optimizer,
            resplit_per_run,
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

    Args: as `_Sweep`, and `epochs`, `batch_size`, `eval_every_steps`;
    `eval_first_step` also evaluates after the first step, as the
    reference does (default False: the curve keeps its points every
    `eval_every_steps` steps; training is the same either way). Curves and
    results hold top-5 accuracy (`test_top5_accuracy`, …) beside top-1.
    """

    name = "iid"
    metrics = ("accuracy", "top5_accuracy")

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
        resplit_per_run: settings.Bool = False,
        eval_first_step: settings.Bool = False,
    ):
        super().__init__(
            learning_rates,
            runs,
            classes,
            train_per_class,
            linear_probe,
            optimizer,
            resplit_per_run,
        )
        self.epochs, self.batch_size = epochs, batch_size
        self.eval_every_steps = eval_every_steps
        self.eval_first_step = eval_first_step

    def _run_fn(self, t, context):
        del context
        epochs, batch_size = self.epochs, self.batch_size
        chunk = batch_size * self.eval_every_steps
        first = self.eval_first_step

        def run(order, rng, name, advance):
            del name
            examples = np.flatnonzero(np.isin(t.support.labels, order))
            x, y = t.support.images, t.support.labels
            curve, step, seen = [], 0, 0
            for epoch in range(epochs):
                shuffled = rng.permutation(examples)
                ends = {*range(chunk, len(shuffled), chunk), len(shuffled)}
                if first and epoch == 0:
                    ends.add(min(batch_size, len(shuffled)))
                start = 0
                for end in sorted(ends):
                    part, start = shuffled[start:end], end
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
