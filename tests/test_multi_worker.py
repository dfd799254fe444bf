"""`--strategy=multi_worker`: two worker processes on loopback, each with
its TF_CONFIG, complete a short run as a user launches it on a cluster,
agree on every result, and report two replicas."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.cli_utils import CONTINUAL_TINY
from tests.cli_utils import EMBEDDED_OMNIGLOT
from tests.cli_utils import REPO
from tests.cli_utils import SEQUENTIAL_ONLY

RUNS = {
    "iid_zap": [
        "--gin_file=gin/omniglot/iid_zap.gin",
        *EMBEDDED_OMNIGLOT,
        "--gin_param=PRETRAIN_EPOCHS = 2",
        "--gin_param=iid_pretraining.batch_size = 8",
        SEQUENTIAL_ONLY,
    ],
    "meta_asb_zap": [
        "--gin_file=gin/omniglot/meta_asb_zap.gin",
        *EMBEDDED_OMNIGLOT,
        "--gin_param=PRETRAIN_EPISODES = 6",
        "--gin_param=asb_pretraining.episodes_per_epoch = 3",
        "--gin_param=asb_pretraining.inner_steps = 3",
        "--gin_param=asb_pretraining.remember = 5",
    ],
    "permuted_swr": ["--gin_file=gin/permuted/swr.gin", *CONTINUAL_TINY],
    "class_incremental_hare_tortoise": [
        "--gin_file=gin/class_incremental/hare_tortoise.gin",
        *CONTINUAL_TINY,
        "--gin_param=WIDTH = 12",
        "--gin_param=class_incremental_tasks.classes_first = 2",
        "--gin_param=class_incremental_tasks.classes_per_task = 2",
        "--gin_param=continual_learning.batch_size = 20",
        "--gin_param=HareTortoise.every = (1, 'epochs')",
    ],
}
TIMED = ("second", "time")


def _differences(a, b, path=""):
    """Paths where two results differ; floats agree within 1e-5: the
    workers' collectives may sum in different orders, which can move a
    gradient element across exactly 0 (measured: zero_gradient_fraction
    3.2e-6, one element, against 0.0); a real disagreement in an accuracy
    or loss is far larger."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= 1e-5 else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _untimed(value):
    if isinstance(value, dict):
        return {
            k: _untimed(v)
            for k, v in value.items()
            if not any(t in k for t in TIMED)
        }
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _launch_cluster(args, out, workers=2):
    hosts = [f"localhost:{p}" for p in _free_ports(workers)]
    procs = []
    for index in range(workers):
        tf_config = {
            "cluster": {"worker": hosts},
            "task": {"type": "worker", "index": index},
        }
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(tf_config),
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        env.pop("ZAPKERAS_CPU_DEVICES", None)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zapkeras.train",
                    *args,
                    "--strategy=multi_worker",
                    f"--output_dir={out}",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return [(p.wait(timeout=600), p.stderr.read()) for p in procs]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_two_workers_complete_and_agree(name, tmp_path):
    out = str(tmp_path / "run")
    for status, stderr in _launch_cluster(RUNS[name], out):
        assert status == 0, stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        chief = json.load(f)
    with open(os.path.join(out, "workers", "1", "results.json")) as f:
        worker = json.load(f)
    assert chief["replicas"] == 2
    assert not _differences(_untimed(chief), _untimed(worker))
