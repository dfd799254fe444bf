"""What a sweep reports: the HParams dashboard, the trial table, failures.

TensorBoard (`tensorboard --logdir OUTPUT_DIR/tensorboard`): the experiment
config (swept bindings and the objective) at the top level, and one session
per completed trial in trial_<id>/ with its bindings and objective, so the
HParams dashboard lists, sorts and plots the trials.
"""

import glob
import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from zapkeras.outputs import console


def best(records, direction):
    """The completed trial with the best objective, or None."""
    done = [r for r in records.values() if r["status"] == "completed"]
    if not done:
        return None
    pick = max if direction == "max" else min
    return pick(done, key=lambda r: r["objective"])


def _hparam(param):
    if param.kind == "choice":
        domain = hp.Discrete(list(param.values))
    elif param.is_int:
        domain = hp.IntInterval(*param.values)
    else:
        domain = hp.RealInterval(*param.values)
    return hp.HParam(param.name, domain)


def _logdir(output_dir):
    return os.path.join(output_dir, "tensorboard")


def write_hparams_config(output_dir, params, objective):
    """The experiment summary, once per sweep directory."""
    logdir = _logdir(output_dir)
    if glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        return  # a resumed sweep: written by its first invocation
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hp.hparams_config(
            hparams=[_hparam(p) for p in params],
            metrics=[hp.Metric(objective, display_name=objective)],
        )
    writer.close()


def write_session(output_dir, params, record, objective):
    """One completed trial's bindings and objective."""
    logdir = os.path.join(_logdir(output_dir), f"trial_{record['trial_id']}")
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hp.hparams(
            {
                _hparam(p): record["hyperparameters"][n]
                for n, p in params.items()
            },
            trial_id=record["trial_id"],
        )
        tf.summary.scalar(objective, record["objective"], step=0)
    writer.close()


def failure_text(record):
    """Which trial failed, with what bindings, why, and where its log is."""
    lines = [
        f"trial {record['trial_id']} FAILED: {record['reason']}",
        f"  bindings: {'  '.join(record['bindings'])}",
    ]
    if record.get("log"):
        lines.append(f"  log: {record['log']}")
    if record.get("log_tail"):
        lines.append("  its last lines:")
        lines += [f"    {line}" for line in record["log_tail"]]
    return "\n".join(lines)


def final_text(summary, params):
    """The trial table, the failures and the best trial."""
    objective = summary["objective"]
    header = ["trial", "status", objective, *params]
    rows = []
    for record in summary["trials"]:
        value = record["objective"]
        status = record["status"]
        if status == "failed" and record.get("exit_code"):
            status += f" (exit {record['exit_code']})"
        rows.append(
            [
                record["trial_id"],
                status,
                "–" if value is None else f"{value:.4g}",
                *(
                    p.gin_text(record["hyperparameters"][n])
                    for n, p in params.items()
                ),
            ]
        )
    parts = ["\n" + console.table(header, rows)]
    failed = [r for r in summary["trials"] if r["status"] == "failed"]
    parts += [failure_text(r) for r in failed]
    top = summary["best"]
    if top:
        chosen = "  ".join(
            f"{n}={p.gin_text(top['hyperparameters'][n])}"
            for n, p in params.items()
        )
        parts.append(
            f"best: {chosen}  objective={top['objective']:.6g} "
            f"({objective}; trial {top['trial_id']}: {top['output_dir']})"
        )
    else:
        parts.append("best: none (no trial completed)")
    return "\n".join(parts)
