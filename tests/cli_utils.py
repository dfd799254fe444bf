"""Running `python -m zapkeras.<module>` the way a user does."""

import json
import os
import signal
import socket
import subprocess
import sys

from zapkeras.tuning import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A continual config shrunk to seconds: 2 tasks of 4 embedded classes.
CONTINUAL_TINY = [
    "--gin_param=DATASET = 'embedded'",
    "--gin_param=TASKS = 2",
    "--gin_param=WIDTH = 8",
    "--gin_param=EPOCHS_PER_TASK = 1",
    "--gin_param=continual_dataset.classes = 4",
    "--gin_param=glyph_class_sets.background_classes = 4",
    "--gin_param=glyph_class_sets.evaluation_classes = 1",
    "--gin_param=continual_learning.probe_size = 20",
]


def quickstart_tiny(width=4, epochs=1, runs=1, rates="(0.01,)", extra=()):
    """The quickstart shrunk to seconds: 12 pretraining and 6 transfer
    classes, `epochs` of pretraining, `runs` transfer runs per rate of
    `rates` (gin text); `extra` bindings after."""
    return [
        "--gin_file=gin/quickstart.gin",
        f"--gin_param=WIDTH = {width}",
        "--gin_param=PRETRAIN_CLASSES = 12",
        "--gin_param=glyph_class_sets.evaluation_classes = 10",
        f"--gin_param=PRETRAIN_EPOCHS = {epochs}",
        "--gin_param=TRANSFER_CLASSES = 6",
        f"--gin_param=TRANSFER_RUNS = {runs}",
        f"--gin_param=TRANSFER_LRS = {rates}",
        "--gin_param=sequential_transfer.eval_every = 3",
        *(f"--gin_param={binding}" for binding in extra),
    ]


# Sequential transfer only (the configs' i.i.d. transfer left out).
SEQUENTIAL_ONLY = (
    "--gin_param=TransferRunner.transfers = "
    "{'sequential': @sequential_transfer}"
)
# An Omniglot config shrunk to seconds on the embedded glyphs.
EMBEDDED_OMNIGLOT = [
    "--gin_param=load_class_sets.name = 'embedded'",
    "--gin_param=glyph_class_sets.background_classes = 12",
    "--gin_param=glyph_class_sets.evaluation_classes = 10",
    "--gin_param=PRETRAIN_CLASSES = None",
    "--gin_param=WIDTH = 4",
    "--gin_param=TRANSFER_CLASSES = 6",
    "--gin_param=TRANSFER_RUNS = 1",
    "--gin_param=TRANSFER_LRS = (0.01,)",
    "--gin_param=sequential_transfer.eval_every = 3",
]


def run_module(module, *args, timeout=600, env=None):
    """Runs the module from the repo root (extra `env` variables set);
    returns the CompletedProcess."""
    env = _env(env)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_scalar_tags(logdir):
    """All scalar tags (TF2 summaries are stored as tensors) under logdir."""
    from tensorboard.backend.event_processing import event_accumulator

    tags = set()
    for root, _, names in os.walk(logdir):
        if any(n.startswith("events.out") for n in names):
            acc = event_accumulator.EventAccumulator(
                root, size_guidance={event_accumulator.TENSORS: 0}
            )
            acc.Reload()
            tags.update(acc.Tags()["tensors"])
    return tags


def run_module_until(module, *args, trigger, env=None):
    """Runs the module and SIGKILLs it as soon as a stdout line contains
    `trigger` (as a preemption would); returns the exit status (-9 when
    killed)."""
    return signal_module_at(
        module, *args, trigger=trigger, signum=signal.SIGKILL, env=env
    ).returncode


def results_without_wall_time(output_dir):
    """results.json of a run, without its wall times (which differ)."""
    with open(os.path.join(output_dir, "results.json")) as f:
        results = json.load(f)

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "wall_seconds"}
        return obj

    return strip(results)


def signal_module_at(module, *args, trigger, signum, env=None):
    """Runs the module and sends it `signum` (SIGINT as Ctrl-C does, or
    SIGTERM) once a stdout line contains `trigger`; returns the
    CompletedProcess (stdout up to the signal and after, stderr)."""
    env = _env(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if trigger in line:
            proc.send_signal(signum)
            break
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, "".join(lines) + out, err
    )


def _env(extra=None):
    """The environment of a module run here: no tuner variables unless
    `extra` sets them."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
        "ZAPKERAS_PROGRESS": "lines",  # the lines tests read, on any shell
    }
    for name in distributed.VARIABLES:
        env.pop(name, None)
    return {**env, **(extra or {})}


class Loopback:
    """keras-tuner's distributed mode on this machine: `start(name)` runs
    the module as the chief ('chief') or as worker `name`, its output in
    LOG_DIR/<name>.log; `wait(name)` returns that output, asserting exit
    status 0."""

    def __init__(self, module, args, log_dir):
        self.module, self.args, self.log_dir = module, list(args), log_dir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.processes = {}

    def log(self, name):
        return os.path.join(self.log_dir, f"{name}.log")

    def start(self, name):
        env = _env(
            {
                "KERASTUNER_TUNER_ID": name,
                "KERASTUNER_ORACLE_IP": "127.0.0.1",
                "KERASTUNER_ORACLE_PORT": str(self.port),
            }
        )
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=REPO,
            env=env,
            stdout=open(self.log(name), "w"),
            stderr=subprocess.STDOUT,
        )
        return self.processes[name]

    def wait(self, name, timeout=900):
        process = self.processes[name]
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = "timeout"
        with open(self.log(name)) as f:
            text = f.read()
        assert code == 0, f"{name}: {code}\n{text[-3000:]}"
        return text

    def kill_all(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
