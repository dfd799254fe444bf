"""The continual protocol: one `model.fit` per task of a problem.

For each task t of a problem from zapkeras.data.continual / warm_start
(permuted, class-incremental, warm-start, multi-stage):

1. the classes the logits may use and the per-task learning rate are set
   and, with `reset_optimizer`, the optimizer state is zeroed (lee2024
   builds a new AdamW per phase); the diagnostics are measured on a probe
   batch of task t's training data before it is trained on
   (hernandez-garcia2025 App. C); methods' `on_task_begin(t)` run;
2. one `model.fit` runs the task's epochs (counted within the task,
   `initial_epoch` on resume) with the method callbacks, recording the
   accuracy of every batch before its update (online accuracy);
3. with `restore_best` the best validation epoch's weights come back, and
   the model (and each method's `eval_models()`, e.g. Hare & Tortoise's
   tortoise, as `<name>_test_accuracy`) is tested on the task's test set
   and, with `accuracy_matrix`, on every task's; the methods' counters
   are recorded;
4. methods' `on_task_end(t)` run (after the test, as the H&T code
   resets at task end after its last test) and the state is checkpointed.

After the last task, problems that ask for it (warm-start) train the same
network from its initial weights on the final task's data with the same
budget and no method callbacks: `fresh_test_accuracy` (lee2024 §3.4's upper
bound; berariu2021's generalisation gap). The global step counts training
steps; it equals `optimizer.iterations` unless `reset_optimizer` restarts
that counter with the rest of the optimizer state (Adam's bias correction
restarts as with a new optimizer).
"""

import inspect
import json
import time

import keras
import numpy as np
import tensorflow as tf

import gin
from zapkeras import compile_options
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.outputs import console
from zapkeras.protocols import base as protocol_base
from zapkeras.protocols import continual_summary
from zapkeras.protocols import diagnostics
from zapkeras.protocols import task_training


class _Run:
    """One continual run: the model, its optimizer, problem and records."""

    def __init__(self, model, problem, context, protocol):
        self.model, self.problem, self.context = model, problem, context
        self.p = protocol
        self.callbacks = list(protocol.callbacks)
        self.methods = base.methods_in(self.callbacks)
        for method in self.methods:
            method.use_run_seed(context.seed)
        self.jit = compile_options.jit_compile(
            protocol.jit_compile, context.strategy
        )
        with context.strategy.scope():
            self.seen = task_training.SeenClasses(problem.num_classes)
            self.schedule, self.optimizer = self.make_optimizer()
            self.seen.compile(model, self.optimizer, self.jit)
            # Under mixed_float16 Keras wraps the optimizer in a
            # LossScaleOptimizer: build and checkpoint the wrapper.
            model.optimizer.build(model.trainable_variables)
            self.initial = [
                tf.Variable(v.value, trainable=False)
                for v in model.trainable_variables
            ]
            self.best = task_training.BestWeights(model)
        # Host-side bookkeeping: outside the scope, since collectives (which
        # initialise variables under MultiWorkerMirroredStrategy) carry no
        # strings.
        self.progress = tf.Variable("{}", dtype=tf.string)
        self.probe = diagnostics.Probe(model, self.seen.cross_entropy)
        for method in self.methods:
            method.set_model(model)  # creates the state it checkpoints
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=model.optimizer,
            progress=self.progress,
            initial=self.initial,
            seen=self.seen.count,
            schedule=[self.schedule.start, self.schedule.steps],
            best=self.best.checkpoint_items(),
            **{
                f"method_{i}_{method.name}": method.checkpoint_items()
                for i, method in enumerate(self.methods)
            },
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, context.checkpoint_dir("continual"), max_to_keep=2
        )
        self.state = {"task": 0, "epoch": 0, "global_step": 0, "tasks": []}
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint)
            self.state = json.loads(self.progress.numpy().decode())
        self.recorder = task_training.BatchRecorder(
            context.writer, protocol.online_window, self.state["global_step"]
        )
        self._compiled = set()

    def make_optimizer(self):
        schedule = task_training.TaskLearningRate(
            self.p.learning_rate,
            self.p.lr_schedule,
            self.p.warmup_fraction,
        )
        return schedule, self.p.optimizer(learning_rate=schedule)

    def save(self):
        self.state["global_step"] = self.recorder.global_step
        self.progress.assign(json.dumps(self.state))
        self.manager.save()

    def evaluate(self, model, data):
        x, y = data
        batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(
            self.p.eval_batch_size
        )
        results = model.evaluate(batches, verbose=0, return_dict=True)
        return float(results["accuracy"])

    def eval_models(self):
        """{name: model} of the methods' extra models, compiled masked."""
        models = {}
        for method in self.methods:
            for name, model in method.eval_models().items():
                if id(model) not in self._compiled:
                    with self.context.strategy.scope():
                        self.seen.compile(model, jit_compile=self.jit)
                    self._compiled.add(id(model))
                models[name] = model
        return models

    def task_hooks(self, hook, task):
        """Every method's on_task_begin / on_task_end (`hook`)."""
        for method in self.methods:
            method.set_model(self.model)
            getattr(method, hook)(task)

    def begin_task(self, task):
        """Step 1 of the module docstring (not repeated on resume)."""
        problem, batch = self.problem, self.p.batch_size
        self.seen.count.assign(problem.seen[task])
        if self.p.reset_optimizer and task > 0:
            for variable in self.optimizer.variables:
                variable.assign(tf.zeros_like(variable))
        steps = (
            problem.steps_per_epoch(task, batch) * problem.phases[task].epochs
        )
        self.schedule.begin_task(self.optimizer.iterations.numpy(), steps)
        self.best.begin_task()
        x, y = problem.probe(task, self.p.probe_size)
        record = self.probe.measure(x, y, self.p.dormant_threshold)
        record.update(
            diagnostics.weight_statistics(
                self.model.trainable_variables, self.initial
            )
        )
        scale = diagnostics.layer_norm_scale(self.model)
        if scale is not None:
            record["layer_norm_scale"] = scale
        self.context.writer.scalars("continual/diagnostics", record, task + 1)
        self.state["current"] = {"diagnostics": record, "online": []}
        self.task_hooks("on_task_begin", task)

    def fit(self, task, model, callbacks, start_epoch=0):
        problem, batch = self.problem, self.p.batch_size
        epochs = problem.phases[task].epochs
        if start_epoch >= epochs:
            return
        batches = problem.batches(task, batch, start_epoch)
        augment = self.p.augment
        if augment is not None:
            # Sequential map: the augmentation's seed generators advance
            # once per call, in order.
            batches = batches.map(lambda x, y: (augment(x, training=True), y))
        validation = None
        if self.p.restore_best:
            validation = problem.validation(task)
        model.fit(
            batches,
            epochs=epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=problem.steps_per_epoch(task, batch),
            validation_data=validation,
            validation_batch_size=self.p.eval_batch_size,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
        )

    def test_task(self, task, online):
        """Step 3 of the module docstring; returns the task's record."""
        problem, window = self.problem, self.p.online_window
        if self.p.restore_best:
            self.best.restore()
        test = problem.task_test(task)
        record = {
            "online_accuracy": float(np.mean(online)) if online else None,
            "online_windows": [
                float(np.mean(online[i : i + window]))
                for i in range(0, len(online), window)
            ],
            "test_accuracy": self.evaluate(self.model, test),
        }
        for name, model in self.eval_models().items():
            record[f"{name}_test_accuracy"] = self.evaluate(model, test)
        if self.p.accuracy_matrix and problem.has_task_tests:
            record["row"] = [
                (
                    self.evaluate(self.model, problem.matrix_test(j))
                    if j <= task or problem.evaluates_future
                    else None
                )
                for j in range(problem.num_tasks)
            ]
        record["diagnostics"] = self.state["current"]["diagnostics"]
        record["counters"] = base.counters_of(self.methods)
        return record

    def log_task(self, task, record, progress):
        values = {
            k: v
            for k, v in record.items()
            if (k == "online_accuracy" or k.endswith("test_accuracy"))
            and v is not None
        }
        # Per-task values: step = task number (from 1, as the console).
        self.context.writer.scalars("continual", values, task + 1)
        self.context.writer.scalars(
            "continual/steps", {"task": task + 1}, self.recorder.global_step
        )
        progress.update(task + 1, values)

    def fresh_accuracy(self, build_model):
        """The final task learned from the initial weights, same budget and
        batches, no method callbacks."""
        task = self.problem.num_tasks - 1
        with self.context.strategy.scope():
            fresh = build_model()
            schedule, optimizer = self.make_optimizer()
            self.seen.compile(fresh, optimizer, self.jit)
        for variable, initial in zip(fresh.trainable_variables, self.initial):
            variable.assign(initial)
        epochs = self.problem.phases[task].epochs
        steps = self.problem.steps_per_epoch(task, self.p.batch_size)
        schedule.begin_task(0, steps * epochs)
        self.fit(task, fresh, [])
        return self.evaluate(fresh, self.problem.task_test(task))


class _EpochSaver(keras.callbacks.Callback):
    """Checkpoints every `every` epochs within a task, with the online
    accuracies of the task's batches so far (`prior` from before a
    resume)."""

    def __init__(self, run, prior, every):
        super().__init__()
        self.run, self.prior, self.every = run, prior, every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        run = self.run
        run.state["current"]["online"] = self.prior + run.recorder.accuracy
        run.state["epoch"] = epoch + 1
        run.save()


def _bar_within(bar, task, problem):
    """Moves `bar` (over tasks) at each of `task`'s epochs."""
    epochs = problem.phases[task].epochs
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: bar.advance(
            task + (epoch + 1) / epochs
        )
    )


@gin.configurable("continual_learning")
@settings.declared("continual_learning")
class ContinualLearning(protocol_base.Protocol):
    """Runs a continual problem (module docstring); gin:
    `continual_learning`. Called with the network (built under the
    strategy's scope), Data(train=, test=) from `continual_dataset` and the
    RunContext, whose `build_model` makes the fresh baseline.

    Args:
      problem: a problem factory called as problem(train, test, seed),
        e.g. @permuted_tasks.
      batch_size: global batch (permuted MNIST reference: 30).
      learning_rate, optimizer, lr_schedule, warmup_fraction: the optimizer
        class is called as optimizer(learning_rate=TaskLearningRate(...)),
        so bind its other settings (momentum, weight_decay,
        global_clipnorm) in gin; lr_schedule 'constant', 'warmup' or
        'one_cycle', restarted every task.
      reset_optimizer: zero the optimizer state, step count included, at
        each task after the first (lee2024 builds a new AdamW per phase).
      callbacks: methods (`zapkeras.methods.base.Method`, e.g. [@ReDo()])
        and any other Keras callbacks, passed to every task's fit; only
        methods get the task hooks, checkpoints, counters and eval models.
      augment: a training-batch augmentation (e.g. @augmentation()).
      restore_best: restore the best-validation epoch's weights at each
        task's end (the problem must hold out validation data).
      accuracy_matrix: test on every task after each task (T² tests).
      fresh_baseline: train a fresh network on the final task (None: the
        problem's default; warm-start problems do).
      probe_size, dormant_threshold: diagnostics probe batch (reference
        1500) and ReDo's τ.
      online_window: batches per online-accuracy window (reference 10).
      eval_batch_size: batch size of tests.
      checkpoint_every_epochs: checkpoint cadence within a task (every
        task's end is checkpointed too).
      jit_compile, precision: XLA and the dtype policy of the run, the
        fresh baseline's and eval models' too (`zapkeras.compile_options`).
    """

    def __init__(
        self,
        *,
        problem=gin.REQUIRED,
        batch_size: settings.PositiveInt = 30,
        learning_rate: settings.PositiveNumber = 0.05,
        optimizer=keras.optimizers.SGD,
        lr_schedule: settings.OneOf(*task_training.SCHEDULES) = "constant",
        warmup_fraction: settings.Fraction = 0.1,
        reset_optimizer: settings.Bool = False,
        callbacks=(),
        augment=None,
        restore_best: settings.Bool = False,
        accuracy_matrix: settings.Bool = False,
        fresh_baseline=None,
        probe_size: settings.PositiveInt = 1500,
        dormant_threshold: settings.NonNegativeNumber = 0.025,
        online_window: settings.PositiveInt = 10,
        eval_batch_size: settings.PositiveInt = 1000,
        checkpoint_every_epochs: settings.PositiveInt = 1,
        jit_compile: compile_options.JitCompile = "auto",
        precision: compile_options.Precision = "float32",
    ):
        self.problem_fn = problem
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.optimizer, self.lr_schedule = optimizer, lr_schedule
        self.warmup_fraction = warmup_fraction
        self.reset_optimizer = reset_optimizer
        self.callbacks, self.augment = tuple(callbacks), augment
        self.restore_best, self.accuracy_matrix = restore_best, accuracy_matrix
        self.fresh_baseline = fresh_baseline
        self.probe_size, self.dormant_threshold = probe_size, dormant_threshold
        self.online_window = online_window
        self.eval_batch_size = eval_batch_size
        self.checkpoint_every_epochs = checkpoint_every_epochs
        self.jit_compile, self.precision = jit_compile, precision

    def result_keys(self):
        """continual_summary's numbers: `<model>_test_accuracy` for the
        methods' eval models (Hare & Tortoise's tortoise), the accuracy
        matrix metrics, the fresh baseline's (unless turned off) and the
        problem's γ when its factory takes `smooth_shift`."""
        keys = ["tasks", "online_accuracy", "test_accuracy"]
        if any(
            type(m).eval_models is not base.Method.eval_models
            for m in base.methods_in(self.callbacks)
        ):
            keys.append("<model>_test_accuracy")
        if self.accuracy_matrix:
            keys += [
                "average_accuracy",
                "backward_transfer",
                "forgetting",
                "forward_transfer",
            ]
        if self.fresh_baseline is not False:  # None: the problem's default
            keys += ["fresh_test_accuracy", "generalization_gap"]
        try:
            settings = inspect.signature(self.problem_fn).parameters
        except (TypeError, ValueError):  # not a function: say all it may
            settings = ("smooth_shift",)
        if "smooth_shift" in settings:
            keys.append("smooth_shift")
        return keys + ["global_steps", "wall_seconds"]

    def check(self, data, seed=0):
        """Builds the problem on the data (its own checks) and returns it."""
        problem = self.problem_fn(data.train, data.test, seed)
        if self.restore_best and problem.validation(0) is None:
            raise UsageError(
                "continual_learning.restore_best = True needs held-out "
                f"validation data, which the {problem.name} problem does "
                "not have; set class_incremental_tasks.validation_fraction "
                "> 0 or restore_best = False."
            )
        return problem

    def __call__(self, model, data, context):
        problem = self.check(data, context.seed)
        with compile_options.precision(self.precision, model):
            return self._learn(model, problem, context)

    def _learn(self, model, problem, context):
        run = _Run(model, problem, context, self)
        state = run.state
        if self.accuracy_matrix and problem.evaluates_future:
            state.setdefault(
                "init_accuracy",
                [
                    run.evaluate(model, problem.matrix_test(j))
                    for j in range(problem.num_tasks)
                ],
            )
        bar = console.Progress(
            f"continual[{problem.name}]",
            problem.num_tasks,
            "task",
            start=state["task"],
        )
        with bar:
            for task in range(state["task"], problem.num_tasks):
                started = time.perf_counter()
                if state["epoch"] == 0:
                    run.begin_task(task)
                prior = state["current"]["online"]
                run.recorder.begin()
                fit_callbacks = [*run.callbacks, run.recorder]
                if self.restore_best:
                    fit_callbacks.append(run.best)
                fit_callbacks.append(
                    _EpochSaver(run, prior, self.checkpoint_every_epochs)
                )
                fit_callbacks.append(_bar_within(bar, task, problem))
                run.fit(task, model, fit_callbacks, state["epoch"])
                record = run.test_task(task, prior + run.recorder.accuracy)
                run.task_hooks("on_task_end", task)
                run.log_task(task, record, bar)
                state["tasks"].append(record)
                state.update(task=task + 1, epoch=0, current=None)
                state["wall_seconds"] = (
                    state.get("wall_seconds", 0.0)
                    + time.perf_counter()
                    - started
                )
                run.save()
        fresh_baseline = self.fresh_baseline
        if fresh_baseline is None:
            fresh_baseline = problem.fresh_baseline
        if fresh_baseline and "fresh_test_accuracy" not in state:
            state["fresh_test_accuracy"] = run.fresh_accuracy(
                context.build_model
            )
            run.save()
        return continual_summary.summarize(
            state,
            problem,
            context,
            run.recorder.global_step,
            self.online_window,
        )
