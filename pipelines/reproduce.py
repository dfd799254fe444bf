"""One command for the seed papers' headline claims, as a scorecard.

    python -m pipelines.reproduce --scale=ci --data_dir=DATA_DIR --seeds=5

runs, through the study pipelines' cells (pipelines/claim_cells.py), the
experiments behind every claim of pipelines/claims.py (or those of
--claims: claim ids or paper names), then writes OUTPUT_DIR/scorecard.md,
scorecard.html and scorecard.json (default OUTPUT_DIR: runs/reproduce):
per claim the paper's statement, its figure or table, the paper's
numbers, and per comparison the measured mean ± std and n of each arm,
the one-sided Mann-Whitney U p-value and a verdict (pipelines/verdict.py
states the rule). A claim whose dataset is not under --data_dir is
"inconclusive: dataset missing" (which, and how to get it) and its runs
are not started; the other claims still run.

The grid is one grid (OUTPUT_DIR/<study>/<cell>/seed_<n>/), resumable and
run across machines like every pipeline's (pipelines/cli.py: --jobs,
--status, --report_only, --gin_param). --scale picks every study's
scale; --seeds defaults to 5, the fewest per arm at which a one-sided
test can reach p < 0.05 with room (5 vs 5: min p 0.004; 3 vs 3 cannot).
"""

import os

from absl import flags

from pipelines import claim_cells
from pipelines import claims as claims_lib
from pipelines import cli
from pipelines import grid
from pipelines import report
from pipelines import stats
from pipelines import verdict as verdict_lib
from zapkeras.data import files as data_files
from zapkeras.outputs import files

STUDY = "reproduce"
SEEDS = 5
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list(
        "claims", None, "Claim ids or papers to reproduce (default: all)."
    )
    flags.adopt_module_key_flags(cli)  # --help lists them


def selected(names):
    """The claims named by id or paper (all when `names` is empty)."""
    if not names:
        return list(claims_lib.CLAIMS)
    known = [c.id for c in claims_lib.CLAIMS]
    papers = list(dict.fromkeys(c.paper for c in claims_lib.CLAIMS))
    cli.choices(STUDY, "claims", names, papers + known)
    return [c for c in claims_lib.CLAIMS if {c.id, c.paper} & set(names)]


def _values(runs, metric, root):
    """The metric of each seed's run, None for runs that did not finish."""
    fn = claim_cells.METRICS[metric][1]
    return [
        (
            fn(grid.load(r, root), r.output_dir(root))
            if grid.is_done(r, root)
            else None
        )
        for r in runs
    ]


def _arm(arm, cells, root, measured):
    values = _values(cells[arm.cell], arm.metric, root) if measured else []
    return {
        "label": arm.label,
        "cell": arm.cell,
        "metric": claim_cells.METRICS[arm.metric][0],
        "values": values,
        "summary": stats.mean_std(values),
    }


def judge(claim, cells, root, missing):
    """The scorecard entry of `claim` (a dict, as scorecard.json holds)."""
    entries = []
    for comparison in claim.comparisons:
        arms = [
            _arm(a, cells, root, not missing)
            for a in (comparison.treatment, comparison.control)
        ]
        v = (
            verdict_lib.missing(missing)
            if missing
            else verdict_lib.judge(
                arms[0]["values"], arms[1]["values"], comparison.alternative
            )
        )
        entries.append(
            {
                "comparison": comparison.text(),
                "test": "one-sided Mann-Whitney U, alternative "
                f"{comparison.alternative!r}",
                "p": v.p,
                "verdict": v.verdict,
                "reason": v.reason,
                "treatment": arms[0],
                "control": arms[1],
            }
        )
    overall = verdict_lib.combine(
        verdict_lib.Verdict(e["verdict"], e["reason"]) for e in entries
    )
    return {
        "id": claim.id,
        "paper": claim.paper,
        "source": claim.source,
        "statement": claim.statement,
        "paper_number": claim.paper_number,
        "note": claim.note,
        "dataset": claim.dataset,
        "verdict": overall.verdict,
        "reason": overall.reason,
        "comparisons": entries,
    }


SUMMARY = ["claim", "source", "verdict"]
COMPARISONS = ["comparison", "treatment", "control", "p (one-sided)", "verdict"]


def _rows(entry):
    return [
        [
            e["comparison"],
            e["treatment"]["summary"],
            e["control"]["summary"],
            "–" if e["p"] is None else f"{e['p']:.3g}",
            f"{e['verdict']}: {e['reason']}",
        ]
        for e in entry["comparisons"]
    ]


def write_scorecard(entries, runs, root, scale, seeds):
    """scorecard.md, .html (pipelines/report.py) and .json; prints the
    summary table."""
    summary = [
        [
            e["id"],
            f"{e['paper']} {e['source']}",
            f"{e['verdict']}: {e['reason']}",
        ]
        for e in entries
    ]
    rep = report.Report(root, "Reproduction scorecard")
    report.grid_section(rep, runs, root, scale)
    rep.paragraph(f"{seeds} seed(s) per cell. Verdict rule: {verdict_lib.RULE}")
    rep.table(SUMMARY, summary)
    for e in entries:
        rep.heading(f"{e['id']} — {e['paper']} {e['source']}")
        rep.paragraph(e["statement"])
        if e["paper_number"]:
            rep.paragraph(f"The paper's numbers: {e['paper_number']}.")
        if e["note"]:
            rep.paragraph(e["note"])
        metrics = dict.fromkeys(
            c[arm]["metric"]
            for c in e["comparisons"]
            for arm in ("treatment", "control")
        )
        rep.paragraph(
            f"Metric: {'; '.join(metrics)}. Verdict: {e['verdict']} "
            f"({e['reason']})."
        )
        rep.table(COMPARISONS, _rows(e))
    rep.write("scorecard")
    files.write_json(
        os.path.join(root, "scorecard.json"),
        {
            "scale": scale,
            "seeds": seeds,
            "alpha": verdict_lib.ALPHA,
            "claims": entries,
        },
    )
    print("\n" + report.markdown_table(SUMMARY, summary))


def main(argv):
    del argv
    chosen = selected(FLAGS.claims)
    seeds = SEEDS if FLAGS.seeds is None else FLAGS.seeds
    if seeds < 1:
        cli.usage_error(STUDY, f"--seeds={seeds}; give 1 or more, e.g. 5.")
    data_dir = FLAGS.data_dir or data_files.default_data_dir()
    cells = claim_cells.cells(FLAGS.scale, seeds, FLAGS.gin_param)
    missing = {
        c.id: claim_cells.missing_data(c.dataset, data_dir) for c in chosen
    }
    needed = [cell for c in chosen if not missing[c.id] for cell in c.cells()]
    runs = [r for cell in dict.fromkeys(needed) for r in cells[cell]]

    def write(runs, root):
        entries = [judge(c, cells, root, missing[c.id]) for c in chosen]
        write_scorecard(entries, runs, root, FLAGS.scale, seeds)

    cli.run_study(STUDY, runs, write)


if __name__ == "__main__":
    define_flags()
    cli.run(main, STUDY)
