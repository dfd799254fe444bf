"""What a study's tables are made of: values per grid cell read from the
runs' results.json, mean ± std over seeds with the number of runs,
Mann-Whitney U tests (scipy; two-sided in the tables, one-sided in
pipelines/verdict.py), and per-run curves stacked for the mean ± std
figures."""

import math
import warnings

import numpy as np
from scipy import stats

from pipelines import grid
from zapkeras.outputs import console


def lookup(results, key):
    """results['a']['b'] for key 'a.b'; None when absent."""
    for part in key.split("."):
        if not isinstance(results, dict) or part not in results:
            return None
        results = results[part]
    return results


def collect(cells, root, metrics):
    """{cell: {label: [value per run]}} for `cells` {cell: [Run]}.

    A metric is a key path into results.json ('continual.test_accuracy')
    or a function of the results dict; a run without results.json, or
    without the value, gives None.
    """
    values = {}
    for cell, runs in cells.items():
        loaded = [
            grid.load(r, root) if grid.is_done(r, root) else None for r in runs
        ]
        values[cell] = {
            label: [
                None if results is None else _value(results, metric)
                for results in loaded
            ]
            for label, metric in metrics.items()
        }
    return values


def _value(results, metric):
    return metric(results) if callable(metric) else lookup(results, metric)


def present(values):
    return [v for v in values if v is not None]


def mean_std(values):
    """'mean ± std (n=N)' (population std, 3 decimals) of the present
    values; a single run shows its value alone, 'value (n=1)'."""
    values = present(values)
    if not values:
        return "–"
    return console.mean_std(np.mean(values), np.std(values), len(values))


ALPHA = 0.05
P_NOTE = (
    "A p cell '– (n too small: min p = …)' marks a comparison whose run "
    "counts cannot give a two-sided Mann-Whitney U p below "
    f"{ALPHA:g} even when every run of one side beats every run of the "
    "other (min p = 2 / C(n1 + n2, n1)), so no test is reported."
)


def min_p(n1, n2, sides=2):
    """Smallest exact Mann-Whitney U p-value (two-sided, or one-sided with
    sides=1) of samples of n1 and n2 runs: complete separation."""
    if not n1 or not n2:
        return 1.0
    return min(1.0, sides / math.comb(n1 + n2, n1))


def mann_whitney_p(a, b, alternative="two-sided"):
    """scipy's Mann-Whitney U p-value of a vs b (present values);
    alternative 'greater' tests a > b."""
    return float(
        stats.mannwhitneyu(
            present(a), present(b), alternative=alternative
        ).pvalue
    )


def mann_whitney(a, b):
    """The table's p cell of a vs b: the two-sided Mann-Whitney U p-value,
    '–' without runs on a side, and a note instead when the sizes cannot
    reach ALPHA (see P_NOTE)."""
    a, b = present(a), present(b)
    if not a or not b:
        return "–"
    smallest = min_p(len(a), len(b))
    if smallest > ALPHA:
        return f"– (n too small: min p = {smallest:.2g})"
    return f"{mann_whitney_p(a, b):.3g}"


def stack(curves):
    """[runs, longest] float array of per-run lists (None entries and
    missing runs → NaN rows/values); None when no run has a curve."""
    curves = [c for c in curves if c is not None]
    if not curves:
        return None
    length = max(len(c) for c in curves)
    out = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        out[i, : len(curve)] = [np.nan if v is None else v for v in curve]
    return out


def bin_columns(array, max_points):
    """Averages consecutive columns so at most `max_points` remain;
    returns (array, columns per bin)."""
    size = max(1, -(-array.shape[1] // max_points))
    bins = -(-array.shape[1] // size)
    padded = np.full((array.shape[0], bins * size), np.nan)
    padded[:, : array.shape[1]] = array
    return nanmean(padded.reshape(len(array), bins, size), 2), size


def nanmean(array, axis):
    """np.nanmean, NaN (without a warning) where everything is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(array, axis)
