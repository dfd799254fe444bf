"""Whether a measured comparison supports a paper's claim: holds, fails or
inconclusive.

A comparison says that a treatment arm's values (one per seed) are
greater (or less) than a control arm's. It is judged by a one-sided
Mann-Whitney U test (scipy, `stats.mann_whitney_p`) in the claimed
direction at ALPHA = 0.05:

- inconclusive: dataset missing — the data of the claim's runs are absent
  (the reason says which and how to get them; decided by the caller);
- inconclusive: too few seeds — the smallest p the test can give for
  n1 and n2 finished runs, 1 / C(n1 + n2, n1) (complete separation), is
  not below ALPHA, so no outcome could support the claim: 3 vs 3 gives
  0.05, 4 vs 4 0.014, 5 vs 5 0.004;
- holds — p < ALPHA in the claimed direction;
- fails — otherwise: the test could have reached ALPHA and did not,
  whether the opposite direction is significant ("the opposite holds")
  or neither is ("not significant").

A claim of several comparisons holds when all hold, fails when any fails,
and is inconclusive otherwise (the reasons of the inconclusive ones).
"""

import dataclasses

from pipelines import stats

ALPHA = stats.ALPHA
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
OPPOSITE = {"greater": "less", "less": "greater"}
RULE = (
    f"one-sided Mann-Whitney U in the claimed direction at alpha = {ALPHA:g}; "
    "holds: p < alpha; fails: the samples could give p < alpha and did "
    "not (the opposite significant, or neither); inconclusive: too few "
    "seeds (the smallest p the run counts allow, 1 / C(n1 + n2, n1), is "
    "not below alpha) or the dataset missing. A claim holds when all its "
    "comparisons hold and fails when any fails."
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict: str  # HOLDS, FAILS or INCONCLUSIVE
    reason: str  # why, with the numbers
    p: float = None  # one-sided p in the claimed direction, when tested

    def text(self):
        return f"{self.verdict}: {self.reason}"


def judge(treatment, control, alternative="greater"):
    """The Verdict of `treatment` `alternative` than `control` (lists of
    per-seed values; None entries are runs that did not finish)."""
    if alternative not in OPPOSITE:
        raise ValueError(f"alternative={alternative!r}: 'greater' or 'less'")
    a, b = stats.present(treatment), stats.present(control)
    smallest = stats.min_p(len(a), len(b), sides=1)
    if smallest >= ALPHA:
        return Verdict(
            INCONCLUSIVE,
            f"too few seeds (n={len(a)} vs {len(b)}, the smallest p this "
            f"test can give is {smallest:.2g}, not below {ALPHA:g})",
        )
    p = stats.mann_whitney_p(a, b, alternative)
    if p < ALPHA:
        return Verdict(HOLDS, f"p = {p:.3g} < {ALPHA:g}", p)
    opposite = stats.mann_whitney_p(a, b, OPPOSITE[alternative])
    if opposite < ALPHA:
        return Verdict(
            FAILS,
            f"the opposite holds (p = {opposite:.3g}; claimed: "
            f"p = {p:.3g})",
            p,
        )
    return Verdict(FAILS, f"not significant (p = {p:.3g} ≥ {ALPHA:g})", p)


def missing(reason):
    """The Verdict of a claim whose data are absent."""
    return Verdict(INCONCLUSIVE, f"dataset missing ({reason})")


def combine(verdicts):
    """One Verdict of a claim from its comparisons' (see the module doc)."""
    verdicts = list(verdicts)
    kinds = [v.verdict for v in verdicts]
    if FAILS in kinds:
        failed = kinds.count(FAILS)
        return Verdict(FAILS, f"{failed} of {len(kinds)} comparisons fail")
    if all(k == HOLDS for k in kinds):
        return Verdict(HOLDS, f"all {len(kinds)} comparisons hold")
    reasons = dict.fromkeys(
        v.reason for v in verdicts if v.verdict == INCONCLUSIVE
    )
    return Verdict(INCONCLUSIVE, "; ".join(reasons))
