"""A live view of a grid: which runs are done, running, failed or pending,
and when the rest should be finished.

    python -m pipelines.progress runs/hernandez2025 [--watch=30]

The view reads only the run directories, so it works from any shell while
a pipeline runs (or after it died). The work queue (grid.py) leaves these
files in each run's directory:

- results.json (written by the run itself): done;
- queue.lock, {host, pid, started, child_pid}, while a queue runs it:
  running if the queue or its child is alive (on another host it is
  assumed alive), else the lock is stale and the run counts as pending;
- queue.json, {exit_code, started, seconds, ...}, when the run ended:
  failed if the exit code is not 0 and there is no results.json.

The grid's runs are listed in ROOT/grid.json (written by the queue), so
runs not started yet show as pending; without it, every seed_<n> directory
under ROOT is a run. ETA = mean duration of the runs this queue finished ×
(runs left, minus what the running ones have done) / runs in flight.
"""

import argparse
import json
import os
import re
import socket
import sys
import time

from zapkeras.outputs import files

LOCK = "queue.lock"
RECORD = "queue.json"
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


def lock_owner_alive(info):
    """Whether the queue that wrote a lock's `info`, or the run it started,
    still runs."""
    if not info or "pid" not in info:
        return False
    if info.get("host") != socket.gethostname():
        return True  # cannot tell from here
    pids = [info["pid"], info.get("child_pid")]
    return any(_alive(pid) for pid in pids if pid is not None)


def read_lock(run_dir):
    """The lock's contents, {} if unreadable, None if there is no lock."""
    path = os.path.join(run_dir, LOCK)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def state(run_dir):
    """(state, details) of one run directory (module docstring)."""
    if os.path.exists(os.path.join(run_dir, "results.json")):
        return DONE, files.read_json(os.path.join(run_dir, RECORD), {})
    lock = read_lock(run_dir)
    if lock is not None and lock_owner_alive(lock):
        return RUNNING, lock
    record = files.read_json(os.path.join(run_dir, RECORD), {})
    if record.get("exit_code"):
        return FAILED, record
    return PENDING, {}


def write_manifest(root, entries):
    """Adds (name, seed, run_dir) entries to ROOT/grid.json, keeping the
    ones already listed (several invocations may share a root)."""
    path = os.path.join(root, MANIFEST)
    listed = files.read_json(path, {"runs": []})["runs"]
    known = {(e["name"], e["seed"]) for e in listed}
    for name, seed, run_dir in entries:
        if (name, seed) not in known:
            known.add((name, seed))
            listed.append(
                {
                    "name": name,
                    "seed": seed,
                    "dir": os.path.relpath(run_dir, root),
                }
            )
    files.write_json(path, {"runs": listed})


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


def status(grid_entries):
    """[(name, seed, run_dir, state, details)] in grid order."""
    return [(n, s, d, *state(d)) for n, s, d in grid_entries]


def summary(statuses, now=None, workers=None):
    """Counts per state, mean seconds of a finished run, and the ETA in
    seconds (None until a run finished under a queue): the mean for each
    pending run plus what the mean leaves of each running one, shared by
    `workers` (default: the runs in flight)."""
    now = time.time() if now is None else now
    counts = {k: 0 for k in (DONE, RUNNING, FAILED, PENDING)}
    durations, started = [], []
    for *_, st, details in statuses:
        counts[st] += 1
        if st == DONE and "seconds" in details:
            durations.append(details["seconds"])
        if st == RUNNING:
            started.append(details.get("started", now))
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
            since = now - details.get("started", now)
            lines.append(
                f"  running {name} seed {seed}: {_minutes(since)} so far "
                f"(pid {details.get('child_pid', details.get('pid'))} on "
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
        statuses = status(entries(args.root))
        if args.watch:
            sys.stdout.write("\033[2J\033[H")
        print(render(args.root, statuses), flush=True)
        counts = summary(statuses)["counts"]
        if not args.watch or not (counts[RUNNING] or counts[PENDING]):
            return
        time.sleep(args.watch)


if __name__ == "__main__":
    main()
