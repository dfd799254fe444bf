"""Speed of zapkeras' hot paths, and of the papers' PyTorch code (issue 7).

Times the library's own code on the Omniglot convnet as the reference code
builds it (frati2024 §2; docs/reference_codes.md §1.5: width 256,
28×28, padding 0, 2304 features; 963 classes here) with synthetic in-memory
images, so that no input I/O is measured:

- i.i.d. pretraining: `model.fit` compiled as `iid_pretraining` compiles it
  (Adam 1e-3, batch 128) on `data.iid_batches`, in images/s, and as a
  fraction of the machine's float32 matmul rate (FLOPs of the convs and the
  classifier counted analytically, ×2 per MAC, ×3 for forward + backward);
- ASB and Meta-ASB: `methods.asb.ASB` / `MetaASB` fit on `asb_episodes`
  (K = 20, R = 64), in episodes/s;
- sequential linear probing: `TransferLearner.train` on cached features,
  one Adam step per example, in steps/s (600 classes);
- a full `sequential_transfer` (features included) evaluated after every
  class, and evaluated only after the first and last class, in seconds as
  the number of classes grows, with the log-log slope of each (1 =
  linear); evaluating all trajectory classes after every class is
  quadratic in the classes by the protocol's definition.

Every measure runs a warm-up first (tracing, excluded) and reports the
median of `repeats` timed repetitions. `--baseline=torch` runs the first
four measures in PyTorch eager as the reference code does them
(tools/torch_baseline.py) in a subprocess started with the glibc malloc
tunables below, in the same run on the same machine. Run it on an idle
machine: with other work on the cores, PyTorch's OpenMP threads slow down
by 10-100x (try --torch_threads=1) and TensorFlow's by about 2x.
TensorFlow's oneDNN kernels run as zapkeras sets them (on, on x86;
TF_ENABLE_ONEDNN_OPTS=0 turns them off, about halving the conv speed); the
JSON records that setting and the CPU's vector extensions ("machine"), on
which oneDNN's kernels depend. The full preset with --baseline=torch took
17 minutes on a 2-core VM, 6 of them the 600-class transfer evaluated after
every class.

`--breakdown` adds where the time goes: each layer's forward + backward
alone and the probe's Adam update alone (tools/breakdown.py).

    python tools/benchmark.py [--quick] [--baseline=torch] [--breakdown]
        [--output=PATH]
"""

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from zapkeras import environment  # isort: skip

environment.prepare()  # a command's environment, before TensorFlow loads

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

import breakdown  # tools/breakdown.py  # isort: skip
from zapkeras import data as data_lib
from zapkeras.methods import asb
from zapkeras.models import convnet
from zapkeras.outputs import tensorboard
from zapkeras.protocols import transfer
from zapkeras.protocols.base import Data
from zapkeras.protocols.base import RunContext
from zapkeras.protocols.learner import TransferLearner

# glibc reads these at process start: no mmap for big blocks and no trimming,
# so PyTorch's per-step tensors reuse heap pages (set for the torch process).
GLIBC_TUNABLES = (
    "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
)
TORCH_SCRIPT = os.path.join(os.path.dirname(__file__), "torch_baseline.py")
# The measures both implementations run; the JSON keys of their rates.
SHARED_KEYS = (
    "iid_images_per_s",
    "asb_iters_per_s",
    "meta_asb_iters_per_s",
    "seq_probe_steps_per_s",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What is measured and how long; `full` is issue 7's set-up."""

    width: int = 256
    classes: int = 963  # pretraining classes = classifier outputs
    images_per_class: int = 20  # synthetic; transfer splits 15 / 5
    train_per_class: int = 15
    iid_batch: int = 128
    iid_steps: int = 10  # optimizer steps per timed repetition
    inner_steps: int = 20  # K
    remember: int = 64  # R
    asb_episodes: int = 5
    meta_asb_episodes: int = 3
    probe_classes: int = 600
    probe_steps: int = 3000
    transfer_classes: tuple = (100, 200, 400, 600)
    repeats: int = 3
    matmul_size: int = 2048
    seed: int = 0


PRESETS = {
    "full": Settings(),
    # Under a minute: fewer steps, K = 5 (Meta-ASB's unrolled trace grows
    # with K), small transfers.
    "quick": Settings(
        iid_steps=3,
        inner_steps=5,
        asb_episodes=3,
        meta_asb_episodes=2,
        probe_steps=300,
        transfer_classes=(5, 10, 20),
        repeats=2,
    ),
}


def timed(fn, repeats, reduce=statistics.median):
    """`reduce` (median) of the wall seconds of `repeats` calls of fn(),
    which must block until its work is done; warm up before."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return reduce(seconds)


def matmul_peak(size, repeats, chain=4):
    """Attainable float32 matmul FLOP/s: best of `repeats` + 2 timings of
    `chain` dependent size×size products in one compiled call."""
    a = tf.random.stateless_normal([size, size], [0, 1]) / size**0.5
    b = tf.random.stateless_normal([size, size], [0, 2]) / size**0.5

    @tf.function
    def products(a, b):
        for _ in range(chain):
            a = tf.matmul(a, b)
        return tf.reduce_sum(a)

    products(a, b).numpy()
    best = timed(lambda: products(a, b).numpy(), repeats + 2, min)
    return chain * 2 * size**3 / best


def flops_per_image(model):
    """Forward + backward FLOPs of one image: conv and dense MACs ×2 ×3
    (norms, ReLUs and pools are not counted)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            h, w, out = layer.output.shape[1:]
            kh, kw, cin, _ = layer.kernel.shape
            macs += h * w * out * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    return 2 * 3 * macs


def synthetic_images(classes, per_class, seed):
    """Uniform [0, 1] 28×28×1 images, `per_class` of each class."""
    rng = np.random.default_rng(seed)
    return data_lib.LabeledImages(
        images=rng.random((classes * per_class, 28, 28, 1), np.float32),
        labels=np.repeat(np.arange(classes, dtype=np.int32), per_class),
        class_names=tuple(f"c{i}" for i in range(classes)),
    )


def build_model(s):
    keras.utils.set_random_seed(s.seed)
    return convnet.frati_convnet(s.classes, width=s.width)


def iid_workload(s, images):
    """The model compiled as `iid_pretraining` does, and its batches."""
    model = build_model(s)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")],
    )
    return model, data_lib.iid_batches(images, s.iid_batch, s.seed)


def asb_workload(s, images, meta):
    """`ASB` / `MetaASB` as `asb_pretraining` builds it (Omniglot reference
    rates: inner 0.1, Adam 1e-3), and its episode stream."""
    cls = asb.MetaASB if meta else asb.ASB
    learner = cls(build_model(s), 0.1, True, seed=s.seed)
    learner.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3))
    learner.optimizer.build(learner.trainable_variables)
    episodes = data_lib.asb_episodes(
        images, inner_steps=s.inner_steps, remember=s.remember, seed=s.seed
    )
    return learner, asb.episode_batches(episodes, 1)


def fit_rate(model, stream, steps, repeats):
    """Steps/s of `model.fit` on `stream`, `steps` per timed repetition,
    after a one-step warm-up that traces the train function."""
    start = time.perf_counter()
    model.fit(stream, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    warm_up = time.perf_counter() - start
    seconds = timed(
        lambda: model.fit(
            stream, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False
        ),
        repeats,
    )
    return steps / seconds, warm_up


def probe_workload(s, model, pool):
    """A linear-probe `TransferLearner` (head of max(classes,
    probe_classes) outputs) and the first `probe_steps` examples of its
    sequential trajectory over `probe_classes` classes, as cached
    features (only those are computed: the rate does not depend on the
    rest)."""
    learner = TransferLearner(
        model,
        max(s.classes, s.probe_classes),
        keras.optimizers.Adam,
        linear_probe=True,
    )
    support, _ = data_lib.split_per_class(pool, s.train_per_class, s.seed)
    x, y = data_lib.sequential_stream(support, np.arange(s.probe_classes))
    x, y = x[: s.probe_steps], y[: s.probe_steps]
    return learner, learner.inputs(x), y


def probe_rate(learner, x, y, repeats):
    """Steps/s of `TransferLearner.train` (batch 1) over (x, y)."""

    def run(n):
        learner.reset(1e-3, seed=0)
        learner.train(x[:n], y[:n], 1)

    start = time.perf_counter()
    run(2)
    warm_up = time.perf_counter() - start
    return len(y) / timed(lambda: run(len(y)), repeats), warm_up


def transfer_seconds(s, model, classes, eval_every=1):
    """Wall seconds of one `SequentialTransfer` run over `classes` classes
    (`train_per_class` support images each, the rest query), evaluated
    every `eval_every` classes, features included."""
    pool = synthetic_images(classes, s.images_per_class, s.seed + classes)
    with tempfile.TemporaryDirectory() as tmp:
        context = RunContext(
            seed=s.seed,
            strategy=tf.distribute.get_strategy(),
            output_dir=tmp,
            condition="benchmark",
            writer=tensorboard.Writer(os.path.join(tmp, "tb")),
        )
        start = time.perf_counter()
        transfer.SequentialTransfer(
            learning_rates=(1e-3,),
            runs=1,
            classes=classes,
            train_per_class=s.train_per_class,
            eval_every=eval_every,
        )(model, Data(transfer=pool), context)
        seconds = time.perf_counter() - start
        context.writer.close()
    return seconds


def growth_exponent(sizes, seconds):
    """Least-squares slope of log(seconds) on log(sizes): 1 = linear."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def measure(s):
    """All zapkeras measures of settings `s`, as the JSON dict."""
    pretrain = synthetic_images(s.classes, s.images_per_class, s.seed)
    peak = matmul_peak(s.matmul_size, s.repeats)
    results = {"matmul_peak_flops_per_s": peak}
    warm_ups = {}

    model, batches = iid_workload(s, pretrain)
    steps_per_s, warm_ups["iid"] = fit_rate(
        model, batches, s.iid_steps, s.repeats
    )
    flops = flops_per_image(model)
    results["flops_per_image"] = flops
    results["iid_images_per_s"] = steps_per_s * s.iid_batch
    results["iid_fraction_of_peak"] = results["iid_images_per_s"] * flops / peak

    for key, meta, episodes in (
        ("asb", False, s.asb_episodes),
        ("meta_asb", True, s.meta_asb_episodes),
    ):
        learner, stream = asb_workload(s, pretrain, meta)
        results[f"{key}_iters_per_s"], warm_ups[key] = fit_rate(
            learner, stream, episodes, s.repeats
        )
    results["meta_asb_cost_vs_asb"] = (
        results["asb_iters_per_s"] / results["meta_asb_iters_per_s"]
    )

    pool = synthetic_images(s.probe_classes, s.images_per_class, s.seed + 1)
    learner, x, y = probe_workload(s, build_model(s), pool)
    results["seq_probe_steps_per_s"], warm_ups["seq_probe"] = probe_rate(
        learner, x, y, s.repeats
    )
    results["seq_probe_traces"] = int(
        learner._train_fn.experimental_get_tracing_count()
    )

    model = build_model(s)
    sizes = s.transfer_classes
    # Evaluated after every class, as issue 7 asks, and only after the first
    # and last class: the difference is the evaluations' cost.
    for key, every in (("", lambda n: 1), ("_train", lambda n: n)):
        seconds = [transfer_seconds(s, model, n, every(n)) for n in sizes]
        results[f"seq_transfer{key}_seconds"] = dict(
            zip(map(str, sizes), seconds)
        )
        results[f"seq_transfer{key}_growth_exponent"] = growth_exponent(
            sizes, seconds
        )
    results["warm_up_seconds"] = warm_ups
    return results


def torch_baseline(s, peak, flops, threads=0):
    """Runs tools/torch_baseline.py with settings `s` in a subprocess with
    GLIBC_TUNABLES set; returns its rates and the derived ratios."""
    env = dict(os.environ, GLIBC_TUNABLES=GLIBC_TUNABLES)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "torch.json")
        subprocess.run(
            [
                sys.executable,
                TORCH_SCRIPT,
                f"--settings={json.dumps(dataclasses.asdict(s))}",
                f"--rates_output={out}",
                f"--threads={threads}",
            ],
            env=env,
            check=True,
        )
        with open(out) as f:
            results = json.load(f)
    results["glibc_tunables"] = GLIBC_TUNABLES
    results["iid_fraction_of_peak"] = results["iid_images_per_s"] * flops / peak
    return results


def machine():
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TF default"),
        "cpu": _cpu(),
    }


def _cpu():
    """The CPU model and its AVX extensions, from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line.split(":", 1) for line in f if ":" in line]
    except OSError:
        return None
    info = {key.strip(): value.strip() for key, value in lines}
    avx = [flag for flag in info.get("flags", "").split() if "avx" in flag]
    return {"model": info.get("model name"), "avx": sorted(avx)}


def report(results):
    """The table printed after a run."""
    torch = results.get("torch", {})
    lines = [f"{'measure':<38}{'zapkeras':>12}{'torch':>12}{'ratio':>8}"]
    for key in (*SHARED_KEYS, "iid_fraction_of_peak"):
        ours, theirs = results[key], torch.get(key)
        line = f"{key:<38}{ours:12.3f}"
        if theirs:
            line += f"{theirs:12.3f}{ours / theirs:8.2f}"
        lines.append(line)
    rows = [
        ("matmul peak (GFLOP/s)", results["matmul_peak_flops_per_s"] / 1e9),
        ("Meta-ASB cost vs ASB (x)", results["meta_asb_cost_vs_asb"]),
    ]
    for key, label in (("", "eval every class"), ("_train", "eval at ends")):
        for n, t in results[f"seq_transfer{key}_seconds"].items():
            rows.append((f"seq. transfer {n} cl., {label} (s)", t))
        rows.append(
            (
                "  growth exponent (1 = linear)",
                results[f"seq_transfer{key}_growth_exponent"],
            )
        )
    lines += [f"{name:<38}{value:12.3f}" for name, value in rows]
    return "\n".join(lines)


flags.DEFINE_bool("quick", False, "A run under a minute (fewer steps, K=5).")
flags.DEFINE_enum("baseline", None, ["torch"], "Also run PyTorch eager.")
flags.DEFINE_string("output", "runs/benchmark.json", "Where the JSON goes.")
flags.DEFINE_list(
    "transfer_classes", None, "Override the preset's transfer sizes."
)
flags.DEFINE_bool(
    "breakdown", False, "Also time each layer and the probe's Adam alone."
)
flags.DEFINE_integer(
    "torch_threads", 0, "PyTorch threads (0: its default, one per core)."
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    preset = "quick" if FLAGS.quick else "full"
    s = PRESETS[preset]
    if FLAGS.transfer_classes:
        sizes = tuple(int(n) for n in FLAGS.transfer_classes)
        s = dataclasses.replace(s, transfer_classes=sizes)
    started = time.perf_counter()
    results = {
        "preset": preset,
        "settings": dataclasses.asdict(s),
        "machine": machine(),
        **measure(s),
    }
    if FLAGS.baseline == "torch":
        results["torch"] = torch_baseline(
            s,
            results["matmul_peak_flops_per_s"],
            results["flops_per_image"],
            FLAGS.torch_threads,
        )
        results["speedup_vs_torch"] = {
            key: results[key] / results["torch"][key] for key in SHARED_KEYS
        }
    if FLAGS.breakdown:
        results["breakdown"] = breakdown.measure(
            s, build_model(s), results["matmul_peak_flops_per_s"]
        )
    results["wall_seconds"] = time.perf_counter() - started
    print(report(results))
    if FLAGS.breakdown:
        print(breakdown.report(results["breakdown"]))
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
