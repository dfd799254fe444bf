"""A live view of a grid: which runs are done, running, failed or pending,
and when the rest should be finished.

    python -m pipelines.progress runs/hernandez2025 [--watch=30]

The view reads only files, so it works from any shell while a pipeline
runs (or after it died): each run's results.json (written by the run:
done) and the state of the grid's oracle (grid.py), in the directory
ROOT/grid.json names:

- trial_<id>/trial.json per run given to a worker (keras-tuner's): its
  status (FAILED: failed, with the exit code it reported), and the
  seconds a finished run took;
- oracle.json: the ongoing trials, each with its worker and start time,
  and the chief's host and pid. An ongoing run is running while that
  process lives (on another host it is assumed to), else pending.

ROOT/grid.json lists the grid's runs, so runs not started yet show as
pending; without it, every seed_<n> directory under ROOT is a run. ETA =
mean duration of the grid's finished runs × (runs left, minus what the
running ones have done) / runs in flight.
"""

import argparse
import glob
import os
import re
import socket
import sys
import time

from zapkeras.outputs import files

MANIFEST = "grid.json"
DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"
_MARKS = {DONE: "✓", RUNNING: "▶", FAILED: "✗", PENDING: "·"}


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def chief_alive(chief):
    """Whether the process that wrote an oracle state (`chief`: its host
    and pid) still runs; one on another host is assumed to."""
    if not chief or "pid" not in chief:
        return False
    if chief.get("host") != socket.gethostname():
        return True  # cannot tell from here
    return _alive(chief["pid"])


def last_metric(metrics, name):
    """The last value of metric `name` in a trial's metrics config."""
    observations = metrics.get(name, {}).get("observations") or [{}]
    value = observations[-1].get("value") or [None]
    return value[0]


def oracle_state(root):
    """{run key: (state, details)} from the grid's oracle (module doc);
    runs it has not given out are absent."""
    manifest = files.read_json(os.path.join(root, MANIFEST)) or {}
    if "oracle" not in manifest:
        return {}
    project = os.path.join(root, manifest["oracle"])
    oracle = files.read_json(os.path.join(project, "oracle.json"), {})
    alive = chief_alive(oracle.get("chief"))
    leases = oracle.get("leases", {})
    found = {}
    for path in glob.glob(os.path.join(project, "trial_*", "trial.json")):
        trial = files.read_json(path, {})
        key = trial.get("hyperparameters", {}).get("values", {}).get("run")
        metrics = trial.get("metrics", {}).get("metrics", {})
        details = {"seconds": last_metric(metrics, "seconds")}
        lease = leases.get(trial.get("trial_id"))
        if trial.get("status") == "FAILED":
            state = FAILED
            code = last_metric(metrics, "exit_code")
            details["exit_code"] = None if code is None else int(code)
        elif lease is not None and alive:
            state = RUNNING
            details.update(lease, host=oracle["chief"].get("host"))
        else:
            state = PENDING
        found[key] = state, details
    return found


def state(run_dir, given=None):
    """(state, details) of one run directory, `given` what the oracle
    says of it (module docstring)."""
    recorded = given or (PENDING, {})
    if os.path.exists(os.path.join(run_dir, "results.json")):
        return DONE, recorded[1]
    if recorded[0] == DONE:  # its directory was deleted since
        return PENDING, {}
    return recorded


def write_manifest(root, entries, oracle):
    """Writes ROOT/grid.json: the (name, seed, run_dir) entries of the
    grid and the directory of its oracle (relative to ROOT)."""
    listed = [
        {"name": n, "seed": s, "dir": os.path.relpath(d, root)}
        for n, s, d in entries
    ]
    files.write_json(
        os.path.join(root, MANIFEST), {"runs": listed, "oracle": oracle}
    )


def entries(root):
    """(name, seed, run_dir) of every run of the grid at `root`."""
    manifest = files.read_json(os.path.join(root, MANIFEST))
    if manifest is not None:
        return [
            (e["name"], e["seed"], os.path.join(root, e["dir"]))
            for e in manifest["runs"]
        ]
    found = []
    for parent, dirs, _ in os.walk(root):
        for d in sorted(dirs):
            match = re.fullmatch(r"seed_(\d+)", d)
            if match:
                name = os.path.relpath(parent, root)
                found.append((name, int(match[1]), os.path.join(parent, d)))
        dirs[:] = [d for d in sorted(dirs) if not d.startswith("seed_")]
    return found


def key(root, run_dir):
    """A run's name in the oracle: its directory under ROOT."""
    return os.path.relpath(run_dir, root)


def status(root, grid_entries):
    """[(name, seed, run_dir, state, details)] in grid order."""
    given = oracle_state(root)
    return [
        (n, s, d, *state(d, given.get(key(root, d))))
        for n, s, d in grid_entries
    ]


def summary(statuses, now=None, workers=None):
    """Counts per state, mean seconds of a finished run, and the ETA in
    seconds (None until a run of this grid finished): the mean for each
    pending run plus what the mean leaves of each running one, shared by
    `workers` (default: the runs in flight)."""
    now = time.time() if now is None else now
    counts = {k: 0 for k in (DONE, RUNNING, FAILED, PENDING)}
    durations, started = [], []
    for *_, st, details in statuses:
        counts[st] += 1
        if st == DONE and details.get("seconds") is not None:
            durations.append(details["seconds"])
        if st == RUNNING:
            started.append(details.get("started") or now)
    mean = sum(durations) / len(durations) if durations else None
    eta = None
    if mean is not None:
        left = mean * counts[PENDING]
        left += sum(max(mean - (now - t), 0.0) for t in started)
        eta = left / (workers or max(counts[RUNNING], 1))
    return {"counts": counts, "mean_seconds": mean, "eta_seconds": eta}


def _minutes(seconds):
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def render(root, statuses, now=None):
    """The view as text: a headline, then one line per run name with a
    mark per seed (✓ done, ▶ running, ✗ failed, · pending), then the
    running and failed runs in detail."""
    now = time.time() if now is None else now
    s = summary(statuses, now)
    c = s["counts"]
    lines = [
        f"{root}: {c[DONE]}/{len(statuses)} done, {c[RUNNING]} running, "
        f"{c[FAILED]} failed, {c[PENDING]} pending; mean run "
        f"{_minutes(s['mean_seconds'])}, ETA {_minutes(s['eta_seconds'])}"
    ]
    by_name = {}
    for name, seed, _, st, _ in statuses:
        by_name.setdefault(name, []).append((seed, st))
    width = max((len(n) for n in by_name), default=0)
    for name, seeds in by_name.items():
        marks = " ".join(f"{seed}{_MARKS[st]}" for seed, st in sorted(seeds))
        lines.append(f"  {name:<{width}}  {marks}")
    for name, seed, run_dir, st, details in statuses:
        if st == RUNNING:
            since = now - (details.get("started") or now)
            lines.append(
                f"  running {name} seed {seed}: {_minutes(since)} so far "
                f"(worker {details.get('tuner_id')} of the chief on "
                f"{details.get('host')})"
            )
        elif st == FAILED:
            lines.append(
                f"  failed  {name} seed {seed}: exit {details['exit_code']}; "
                f"see {os.path.join(run_dir, 'pipeline.log')}"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.progress", description=__doc__.split("\n")[0]
    )
    parser.add_argument("root", help="the pipeline's --output_dir")
    parser.add_argument(
        "--watch",
        type=float,
        default=0,
        help="refresh every this many seconds until nothing is left to run",
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.exit(2, f"progress: error: no grid at {args.root!r}.\n")
    while True:
        statuses = status(args.root, entries(args.root))
        if args.watch:
            sys.stdout.write("\033[2J\033[H")
        print(render(args.root, statuses), flush=True)
        counts = summary(statuses)["counts"]
        if not args.watch or not (counts[RUNNING] or counts[PENDING]):
            return
        time.sleep(args.watch)


if __name__ == "__main__":
    main()
