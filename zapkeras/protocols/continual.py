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

import keras

import gin
from zapkeras import compile_options
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.outputs import console
from zapkeras.protocols import base as protocol_base
from zapkeras.protocols import continual_run
from zapkeras.protocols import continual_summary
from zapkeras.protocols import task_training


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
      logit_penalty: a per-example penalty of the logits added to the
        masked cross-entropy of the run's network (not the fresh
        baseline's), e.g. @SpectralDecoupling() (lee2024 §3.4); any object
        with `penalty(logits)`.
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
        logit_penalty=None,
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
        if logit_penalty is not None and not callable(
            getattr(logit_penalty, "penalty", None)
        ):
            raise UsageError(
                f"continual_learning.logit_penalty = {logit_penalty!r} has "
                "no penalty(logits) method; use @SpectralDecoupling() or "
                "None."
            )
        self.logit_penalty = logit_penalty
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
        run = continual_run.Run(model, problem, context, self)
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
                run.learn_task(task, bar)
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
