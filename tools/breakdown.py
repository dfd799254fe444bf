"""Where the time of the hot paths goes, read beside tools/benchmark.py
(issue 7): what bounds each rate on this machine.

- Per layer of the reference convnet (width 256, 963 classes), at the batch
  sizes of i.i.d. pretraining (128) and of an ASB inner step (1): wall ms
  of the layer's forward + backward on its own (gradients w.r.t. its
  weights, and its input unless it is the first layer), with the GFLOP/s of
  the convs and the classifier and their share of the matmul rate; then
  the whole model's forward + backward with its loss, and the sum of the
  layers.
- The linear probe's step (`probe_steps` steps over 600 classes on a
  963-output head, as the benchmark): `TransferLearner.train` per step,
  against the fused Adam update of the head alone, the floor of that step.

Every time is the median of `repeats` timings of compiled calls. Run by
`python tools/benchmark.py --breakdown` (its JSON key "breakdown").
"""

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from zapkeras.protocols import learner as learner_lib


def seconds_per_call(fn, calls, repeats):
    """Median wall seconds of one fn() over `repeats` runs of `calls`."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls)
    return statistics.median(runs)


def _backward_macs(layer, input_grad):
    """Forward + backward MACs of a conv or dense layer, else 0."""
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, out = layer.kernel.shape
        h, w = layer.output.shape[1:3]
        macs = h * w * out * kh * kw * cin
    elif isinstance(layer, keras.layers.Dense):
        macs = layer.kernel.shape[0] * layer.kernel.shape[1]
    else:
        return 0
    return macs * (3 if input_grad else 2)


def _timed_gradient(fn, x, variables, watch, calls, repeats):
    """Seconds of fn(x)'s forward + gradient w.r.t. variables (and x)."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            if watch:
                tape.watch(x)
            loss = fn(x)
        targets = ([x] if watch else []) + variables
        return tf.add_n(
            [tf.reduce_sum(g) for g in tape.gradient(loss, targets)]
        )

    return seconds_per_call(lambda: step().numpy(), calls, repeats)


def layer_costs(model, batch, peak, calls, repeats):
    """Rows of (layer, ms, GFLOP/s, share of peak) and the whole model."""
    rows = []
    for i, layer in enumerate(model.layers[1:]):
        shape = [batch, *layer.input.shape[1:]]
        x = tf.random.stateless_uniform(shape, [i, batch])
        first = layer.input is model.input
        seconds = _timed_gradient(
            lambda x: tf.reduce_sum(layer(x, training=True)),
            x,
            layer.trainable_variables,
            not first,
            calls,
            repeats,
        )
        flops = 2 * batch * _backward_macs(layer, not first) / seconds
        rows.append(
            {
                "layer": layer.name,
                "ms": seconds * 1e3,
                "gflop_per_s": flops / 1e9 if flops else None,
                "share_of_peak": flops / peak if flops else None,
            }
        )
    images = tf.random.stateless_uniform(
        [batch, *model.input.shape[1:]], [9, 9]
    )
    labels = tf.zeros([batch], tf.int32)
    whole = _timed_gradient(
        lambda x: tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(
                labels, model(x, training=True), from_logits=True
            )
        ),
        images,
        model.trainable_variables,
        False,
        calls,
        repeats,
    )
    return {
        "layers": rows,
        "model_ms": whole * 1e3,
        "sum_of_layers_ms": sum(row["ms"] for row in rows),
    }


def probe_costs(s, model, steps):
    """ms per step of the probe's training and of its fused Adam alone."""
    head = [
        model.get_layer("classifier").kernel.shape[0],
        max(s.classes, s.probe_classes),
    ]
    learner = learner_lib.TransferLearner(
        model, head[1], keras.optimizers.Adam, linear_probe=True
    )
    rng = np.random.default_rng(s.seed)
    x = rng.random((steps, head[0]), np.float32)
    y = rng.integers(0, s.probe_classes, steps).astype(np.int32)
    grads = [tf.ones_like(v) * 1e-3 for v in learner.variables]

    @tf.function
    def adam_only():
        for _ in tf.range(steps):
            learner_lib._fused_adam_step(
                learner.optimizer, learner._adam_slots, grads
            )

    learner.reset(1e-3, seed=s.seed)
    step = seconds_per_call(lambda: learner.train(x, y, 1), 1, s.repeats)
    adam = seconds_per_call(adam_only, 1, s.repeats)
    return {
        "head": head,
        "step_ms": step / steps * 1e3,
        "fused_adam_ms": adam / steps * 1e3,
        "steps_per_s": steps / step,
        "steps_per_s_if_only_adam": steps / adam,
    }


def measure(s, model, peak):
    """Per-layer costs at the i.i.d. batch and at batch 1 (an ASB inner
    step) of `model` (the benchmark's convnet), and the probe's."""
    return {
        "per_batch": {
            str(b): layer_costs(model, b, peak, max(3, 256 // b), s.repeats)
            for b in (s.iid_batch, 1)
        },
        "seq_probe": probe_costs(s, model, s.probe_steps),
    }


def report(results):
    lines = []
    for batch, costs in results["per_batch"].items():
        lines.append(f"\nbatch {batch}: forward + backward per layer")
        for row in costs["layers"]:
            rate = ""
            if row["gflop_per_s"]:
                rate = (
                    f"{row['gflop_per_s']:8.1f} GFLOP/s "
                    f"{row['share_of_peak']:6.0%} of peak"
                )
            lines.append(f"  {row['layer']:<12}{row['ms']:9.2f} ms {rate}")
        lines.append(
            f"  sum of layers {costs['sum_of_layers_ms']:.1f} ms, whole "
            f"model with loss {costs['model_ms']:.1f} ms"
        )
    probe = results["seq_probe"]
    lines.append(
        f"\nlinear probe, head {probe['head']}: {probe['step_ms']:.2f} ms per "
        f"step, of which fused Adam alone {probe['fused_adam_ms']:.2f} ms "
        f"(at most {probe['steps_per_s_if_only_adam']:.0f} steps/s)"
    )
    return "\n".join(lines)
