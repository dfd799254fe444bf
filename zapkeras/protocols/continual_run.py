"""One run of the continual protocol (zapkeras.protocols.continual): the
model with its optimizer, checkpoint and records, and the steps of a task:
begin (masks, learning rate, diagnostics, hooks), fit, test, log, save."""

import json
import time

import keras
import numpy as np
import tensorflow as tf

from zapkeras import compile_options
from zapkeras.methods import base
from zapkeras.protocols import diagnostics
from zapkeras.protocols import task_training


class Run:
    """One continual run: the model, its optimizer, problem, checkpoint and
    records, and the steps of one task (zapkeras.protocols.continual)."""

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
            self.seen.compile(
                model, self.optimizer, self.jit, protocol.logit_penalty
            )
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

    def learn_task(self, task, bar):
        """Steps 1-4 of one task (step 1 is not repeated on resume)."""
        state, p = self.state, self.p
        started = time.perf_counter()
        if state["epoch"] == 0:
            self.begin_task(task)
        prior = state["current"]["online"]
        self.recorder.begin()
        callbacks = [*self.callbacks, self.recorder]
        if p.restore_best:
            callbacks.append(self.best)
        callbacks.append(EpochSaver(self, prior, p.checkpoint_every_epochs))
        callbacks.append(bar_within(bar, task, self.problem))
        self.fit(task, self.model, callbacks, state["epoch"])
        record = self.test_task(task, prior + self.recorder.accuracy)
        self.task_hooks("on_task_end", task)
        self.log_task(task, record, bar)
        state["tasks"].append(record)
        state.update(task=task + 1, epoch=0, current=None)
        state["wall_seconds"] = (
            state.get("wall_seconds", 0.0) + time.perf_counter() - started
        )
        self.save()

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


class EpochSaver(keras.callbacks.Callback):
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


def bar_within(bar, task, problem):
    """Moves `bar` (over tasks) at each of `task`'s epochs."""
    epochs = problem.phases[task].epochs
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: bar.advance(
            task + (epoch + 1) / epochs
        )
    )
