"""The papers' PyTorch code paths, timed as tools/benchmark.py times ours.

Eager PyTorch as the reference code runs it (docs/reference_codes.md
§1.2-1.5, §1.7), on the same convnet (conv 3×3 → InstanceNorm2d(affine) →
ReLU → max-pool 2, padding 0, pools [2, 2, 0], Linear(2304, classes)) and
synthetic in-memory images:

- i.i.d.: Adam 1e-3, batches of `iid_batch` random images, train mode;
- ASB (`run_sequential_episode`): zap row c (Kaiming-normal, bias kept),
  K plain-SGD steps of one image in place, one Adam step on the K + R meta
  batch at the adapted weights;
- Meta-ASB (`run_meta_episode`, the `higher` loop): the K steps on
  functional weights with `create_graph=True`, the meta loss backpropagated
  through them to the initial weights, one Adam step;
- sequential linear probe (`anml.test_train`, opt_params classifier): eval
  mode, the whole model run on one image per step, Adam over all
  parameters of which only the head has gradients.

Started by tools/benchmark.py with GLIBC_TUNABLES in its environment; takes
the benchmark's settings as JSON and writes its rates as JSON. Threads:
PyTorch's default (one per core) unless --threads says otherwise; on a
busy machine 2 OpenMP threads ran a batch-1 forward 12x slower than 1.
"""

import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from absl import app
from absl import flags
from torch import nn

flags.DEFINE_string("settings", None, "tools/benchmark.py Settings, JSON.")
flags.DEFINE_string("rates_output", None, "Where the JSON rates go.")
flags.DEFINE_bool("channels_last", False, "NHWC memory format for convs.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads; 0: the default.")
FLAGS = flags.FLAGS


def convnet(width, classes):
    """The reference Omniglot convnet with its init (§1.5)."""
    blocks = []
    channels = 1
    for pool in (True, True, False):
        conv = nn.Conv2d(channels, width, 3, padding=0)
        nn.init.kaiming_normal_(conv.weight)
        blocks += [conv, nn.InstanceNorm2d(width, affine=True), nn.ReLU()]
        if pool:
            blocks.append(nn.MaxPool2d(2))
        channels = width
    blocks += [nn.Flatten(), nn.Linear(9 * width, classes)]
    return nn.Sequential(*blocks)


def timed(fn, repeats, reduce=statistics.median):
    """`reduce` (median) of the seconds of `repeats` calls of fn(), after
    one warm-up call."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return reduce(seconds)


class Data:
    """Synthetic [N, 1, 28, 28] images in [0, 1], `per_class` per class."""

    def __init__(self, classes, per_class, seed, channels_last):
        rng = np.random.default_rng(seed)
        images = torch.from_numpy(
            rng.random((classes * per_class, 1, 28, 28), np.float32)
        )
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.images = images
        self.labels = torch.arange(classes).repeat_interleave(per_class)
        self.per_class = per_class
        self.classes = classes
        self.rng = np.random.default_rng([seed, 1])

    def batch(self, size):
        idx = torch.from_numpy(self.rng.choice(len(self.labels), size, False))
        return self.images[idx], self.labels[idx]

    def episode(self, inner_steps, remember):
        """Class c, K of its images (with replacement if it has fewer) and
        R images of all classes without replacement (§1.2)."""
        c = int(self.rng.integers(self.classes))
        draws = self.rng.choice(
            self.per_class, inner_steps, inner_steps > self.per_class
        )
        inner = torch.from_numpy(c * self.per_class + draws)
        kept = self.batch(remember)
        return c, self.images[inner], self.labels[inner], kept


def zap(head, c):
    """The reference's `lobotomize` of one class: row c Kaiming-normal with
    fan_in = in (std √(2/in)); bias and Adam state untouched (§1.1)."""
    with torch.no_grad():
        row = head.weight[c].unsqueeze(0)
        nn.init.kaiming_normal_(row)
        head.weight[c] = row[0]


def iid_rate(s, model, data):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def steps():
        for _ in range(s["iid_steps"]):
            x, y = data.batch(s["iid_batch"])
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    return s["iid_steps"] * s["iid_batch"] / timed(steps, s["repeats"])


def asb_episode(s, model, inner, outer, data):
    c, xs, ys, (rx, ry) = data.episode(s["inner_steps"], s["remember"])
    zap(model[-1], c)
    for i in range(len(ys)):
        inner.zero_grad()
        F.cross_entropy(model(xs[i : i + 1]), ys[i : i + 1]).backward()
        inner.step()
    outer.zero_grad()
    loss = F.cross_entropy(model(torch.cat([xs, rx])), torch.cat([ys, ry]))
    loss.backward()
    outer.step()


def meta_asb_episode(s, model, inner_lr, outer, data):
    c, xs, ys, (rx, ry) = data.episode(s["inner_steps"], s["remember"])
    zap(model[-1], c)
    names = [name for name, _ in model.named_parameters()]
    fast = [p for _, p in model.named_parameters()]
    for i in range(len(ys)):
        logits = torch.func.functional_call(
            model, dict(zip(names, fast)), (xs[i : i + 1],)
        )
        loss = F.cross_entropy(logits, ys[i : i + 1])
        grads = torch.autograd.grad(loss, fast, create_graph=True)
        fast = [p - inner_lr * g for p, g in zip(fast, grads)]
    logits = torch.func.functional_call(
        model, dict(zip(names, fast)), (torch.cat([xs, rx]),)
    )
    outer.zero_grad()
    F.cross_entropy(logits, torch.cat([ys, ry])).backward()
    outer.step()


def episode_rate(s, model, data, meta):
    model.train()
    outer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    key = "meta_asb_episodes" if meta else "asb_episodes"

    def episodes():
        for _ in range(s[key]):
            if meta:
                meta_asb_episode(s, model, 0.1, outer, data)
            else:
                asb_episode(s, model, inner, outer, data)

    return s[key] / timed(episodes, s["repeats"])


def probe_rate(s, model, data):
    """Steps/s of the reference's sequential linear probe (§1.7)."""
    model.eval()
    head = model[-1]
    for p in model.parameters():
        p.requires_grad_(False)
    head.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    per_class = s["train_per_class"]
    order = [
        c * data.per_class + i
        for c in range(s["probe_classes"])
        for i in range(per_class)
    ][: s["probe_steps"]]
    x, y = data.images[order], data.labels[order]

    def steps():
        for i in range(len(y)):
            optimizer.zero_grad()
            F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
            optimizer.step()

    return len(y) / timed(steps, s["repeats"])


def matmul_peak(size, repeats, chain=4):
    """float32 matmul FLOP/s as tools/benchmark.py measures it for TF."""
    a = torch.randn(size, size) / size**0.5
    b = torch.randn(size, size) / size**0.5

    def products():
        c = a
        for _ in range(chain):
            c = c @ b
        return float(c.sum())

    best = timed(products, repeats + 2, min)
    return chain * 2 * size**3 / best


def measure(s, channels_last=False):
    torch.manual_seed(s["seed"])

    def model(classes):
        net = convnet(s["width"], classes)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    data = Data(s["classes"], s["images_per_class"], s["seed"], channels_last)
    pretrain_model = model(s["classes"])
    results = {
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in pretrain_model.parameters()),
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        "matmul_peak_flops_per_s": matmul_peak(s["matmul_size"], s["repeats"]),
        "iid_images_per_s": iid_rate(s, pretrain_model, data),
        "asb_iters_per_s": episode_rate(s, model(s["classes"]), data, False),
        "meta_asb_iters_per_s": episode_rate(
            s, model(s["classes"]), data, True
        ),
    }
    probe = Data(
        s["probe_classes"], s["images_per_class"], s["seed"], channels_last
    )
    outputs = max(s["classes"], s["probe_classes"])
    results["seq_probe_steps_per_s"] = probe_rate(s, model(outputs), probe)
    return results


def main(argv):
    del argv
    if FLAGS.threads:
        torch.set_num_threads(FLAGS.threads)
    results = measure(json.loads(FLAGS.settings), FLAGS.channels_last)
    with open(FLAGS.rates_output, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["settings", "rates_output"])
    app.run(main)
