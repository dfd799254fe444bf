"""The table cells: mean ± std with the number of runs, a single run's
value alone, and no p-value where the run counts cannot reach p < 0.05."""

import itertools

import pytest
from scipy import stats as scipy_stats

from pipelines import stats


def test_mean_std_shows_n_and_no_std_for_one_run():
    assert stats.mean_std([0.5, 0.7, 0.6]) == "0.600 ± 0.082 (n=3)"
    assert stats.mean_std([0.594, None]) == "0.594 (n=1)"
    assert stats.mean_std([None]) == "–"


@pytest.mark.parametrize("n1,n2", itertools.product((1, 2, 3, 4), (2, 3, 5)))
def test_min_p_is_scipys_exact_p_of_complete_separation(n1, n2):
    a, b = list(range(n1)), list(range(10, 10 + n2))
    exact = scipy_stats.mannwhitneyu(
        a, b, alternative="two-sided", method="exact"
    ).pvalue
    assert stats.min_p(n1, n2) == pytest.approx(exact)


def test_p_cell_is_a_note_when_the_sizes_cannot_reach_alpha():
    low, high = [0.1, 0.2, 0.3, 0.35], [0.6, 0.7, 0.8, 0.9]
    assert stats.mann_whitney(low[:3], high[:3]) == (
        "– (n too small: min p = 0.1)"
    )
    assert stats.mann_whitney(low[:3], high) == "– (n too small: min p = 0.057)"
    assert stats.mann_whitney([0.1, None], [0.5]) == (
        "– (n too small: min p = 1)"
    )
    assert stats.mann_whitney(low, high) == "0.0286"
    assert stats.mann_whitney([], high) == "–"
    assert "min p" in stats.P_NOTE and "0.05" in stats.P_NOTE
