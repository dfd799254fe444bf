"""`python -m pipelines.reproduce`: the verdict rule on constructed numbers,
the claim registry against the grid, the dataset check, bad flags, and
the whole scorecard end to end at a tiny scale (every claim reaches a
verdict or "inconclusive"; scorecard.md, .html and .json agree)."""

import html
import json
import os

import pytest

from pipelines import claim_cells
from pipelines import claims
from pipelines import verdict
from tests.cli_utils import run_module

SEPARATED = ([0.61, 0.62, 0.63, 0.64, 0.65], [0.51, 0.52, 0.53, 0.54, 0.55])
OVERLAPPING = ([0.50, 0.53, 0.56, 0.52, 0.55], [0.51, 0.54, 0.50, 0.53, 0.56])


def test_three_seeds_a_side_are_inconclusive_even_when_separated():
    v = verdict.judge([0.7, 0.8, 0.9], [0.1, 0.2, 0.3])
    assert v.verdict == verdict.INCONCLUSIVE and v.p is None
    assert v.reason.startswith("too few seeds (n=3 vs 3")
    assert "smallest p this test can give is 0.05" in v.reason


def test_five_seeds_a_side_hold_or_fail():
    high, low = SEPARATED
    holds = verdict.judge(high, low)
    assert holds.verdict == verdict.HOLDS and holds.p < 0.05
    assert verdict.judge(low, high, "less").verdict == verdict.HOLDS
    opposite = verdict.judge(low, high)
    assert opposite.verdict == verdict.FAILS
    assert opposite.reason.startswith("the opposite holds")
    flat = verdict.judge(*OVERLAPPING)
    assert flat.verdict == verdict.FAILS
    assert flat.reason.startswith("not significant")


def test_unfinished_runs_count_as_missing_seeds():
    high, low = SEPARATED
    v = verdict.judge(high[:3] + [None, None], low[:3])
    assert v.verdict == verdict.INCONCLUSIVE and "n=3 vs 3" in v.reason
    assert verdict.judge([], low).verdict == verdict.INCONCLUSIVE


def test_a_claim_holds_only_when_every_comparison_holds():
    high, low = SEPARATED
    holds, fails = verdict.judge(high, low), verdict.judge(low, high)
    few = verdict.judge(high[:3], low[:3])
    assert verdict.combine([holds, holds]).verdict == verdict.HOLDS
    assert verdict.combine([holds, few, fails]).verdict == verdict.FAILS
    combined = verdict.combine([holds, few])
    assert combined.verdict == verdict.INCONCLUSIVE
    assert combined.reason == few.reason
    missing = verdict.missing("Omniglot not found")
    assert (
        missing.text() == "inconclusive: dataset missing (Omniglot not found)"
    )


def test_every_claim_names_cells_and_metrics_of_the_grid():
    assert len({c.id for c in claims.CLAIMS}) == len(claims.CLAIMS)
    for scale in ("ci", "small", "paper"):
        cells = claim_cells.cells(scale, 2)
        assert all(len(runs) == 2 for runs in cells.values())
        for claim in claims.CLAIMS:
            assert claim.statement and claim.source, claim.id
            assert claim.dataset in (None, *claim_cells.DATASETS)
            for comparison in claim.comparisons:
                assert comparison.alternative in ("greater", "less")
                for arm in (comparison.treatment, comparison.control):
                    assert arm.cell in cells, (claim.id, arm.cell)
                    assert arm.metric in claim_cells.METRICS


def test_ci_budgets_reach_every_continual_run_and_only_at_ci():
    """The scorecard's ci continual runs get budgets at which networks
    learn, appended after the study's own ci settings (so they win); the
    small and paper scales are the studies' own."""
    for scale in ("ci", "small"):
        for name, runs in claim_cells.cells(scale, 1).items():
            study, rest = name.split("/", 1)
            key = rest.split("/")[0] if study == "hernandez2025" else study
            budget = claim_cells.CI_BUDGETS.get(key)
            if budget is None:
                continue
            last = {}
            for binding in runs[0].params:
                last[binding.split(" = ")[0]] = binding
            wins = all(last.get(b.split(" = ")[0]) == b for b in budget)
            assert wins == (scale == "ci"), name


def test_missing_data_names_the_dataset_and_how_to_get_it(tmp_path):
    root = str(tmp_path)
    assert claim_cells.missing_data(None, root) is None
    reason = claim_cells.missing_data("omniglot", root)
    assert reason.startswith(f"Omniglot not found under {root}")
    assert "images_background.zip" in reason and "--data_dir" in reason
    for name in ("images_background", "images_evaluation"):
        os.makedirs(tmp_path / "omniglot" / name)
    assert claim_cells.missing_data("omniglot", root) is None
    assert "Omni-image" in claim_cells.missing_data("omni_image", root)


def test_bad_claims_and_seeds_exit_2_naming_the_flag(tmp_path):
    out = f"--output_dir={tmp_path}"
    proc = run_module("pipelines.reproduce", "--claims=nope", out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--claims has ['nope']" in proc.stderr
    assert "lee2024-warm-start-gap" in proc.stderr
    proc = run_module("pipelines.reproduce", "--seeds=0", out)
    assert proc.returncode == 2 and "--seeds=0" in proc.stderr
    assert not os.listdir(tmp_path)


# Every claim's cells shrunk to seconds (one seed: a few minutes in all).
TINY = [
    "WIDTH = 8",
    "PRETRAIN_EPOCHS = 1",
    "PRETRAIN_EPISODES = 4",
    "asb_pretraining.episodes_per_epoch = 2",
    "TRANSFER_CLASSES = 3",
    "TRANSFER_RUNS = 1",
    "TRANSFER_LRS = (0.001,)",
    "sequential_transfer.eval_every = 3",
    "zap_divergence.steps = 3",
    "zap_divergence.batch_size = 16",
    "EPOCHS_PER_TASK = 1",
    "glyph_class_sets.drawings = 20",
    "warm_start_tasks.scale_epochs = False",
    "continual_learning.probe_size = 20",
]


def _cells_of(markdown_table_text):
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in markdown_table_text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


@pytest.mark.slow
def test_the_scorecard_end_to_end(tmp_path):
    """On an empty --data_dir: the claims on the embedded glyphs run (13
    claims, 23 runs) and those on Omniglot and Omni-image are
    inconclusive: dataset missing, their runs not started. (Their cells
    are frati2024's, which tests/pipelines/test_frati2024.py runs; with
    Omniglot this test would take ~10 min more of CI.)"""
    data, root = tmp_path / "data", tmp_path / "reproduce"
    data.mkdir()
    proc = run_module(
        "pipelines.reproduce",
        f"--output_dir={root}",
        f"--data_dir={data}",
        "--seeds=1",
        "--jobs=2",
        *(f"--gin_param={binding}" for binding in TINY),
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(root / "scorecard.json") as f:
        card = json.load(f)
    assert card["seeds"] == 1 and card["scale"] == "ci"
    entries = {e["id"]: e for e in card["claims"]}
    assert list(entries) == [c.id for c in claims.CLAIMS]
    markdown = (root / "scorecard.md").read_text()
    page = (root / "scorecard.html").read_text()
    summary = {row[0]: row[2] for row in _cells_of(markdown)}
    for claim in claims.CLAIMS:
        e = entries[claim.id]
        text = f"{e['verdict']}: {e['reason']}"
        assert e["verdict"] in (
            verdict.HOLDS,
            verdict.FAILS,
            verdict.INCONCLUSIVE,
        )
        assert summary[claim.id] == text  # md and json agree
        assert html.escape(text) in page  # html too
        assert html.escape(claim.statement) in page
        assert claim.statement in markdown
        dataset_missing = claim.dataset in ("omniglot", "omni_image")
        for c in e["comparisons"]:
            if dataset_missing:
                assert c["reason"].startswith("dataset missing (")
                assert c["treatment"]["values"] == []
            else:  # one seed a side: every run finished, too few seeds
                assert c["reason"].startswith("too few seeds (n=1 vs 1")
                values = c["treatment"]["values"] + c["control"]["values"]
                assert len(values) == 2 and None not in values
        assert text in proc.stdout  # the printed table
    assert not (root / "frati2024").exists()  # no Omniglot: not started
