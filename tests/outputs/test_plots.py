"""The figures' labels: titles naming the transfer and metric, axes saying
what is plotted, ±std bands on mean curves, integer task ticks numbered
from 1."""

import numpy as np
import pytest
from matplotlib import collections

from zapkeras.outputs import plots
from zapkeras.protocols import transfer


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures the plot functions render, in order."""
    made = []
    render = plots.png

    def keep(fig):
        made.append(fig)
        return render(fig)

    monkeypatch.setattr(plots, "png", keep)
    return made


def _curve(x_key, xs, accuracies):
    return {
        "curve": [
            {x_key: x, "test_accuracy_seen": a} for x, a in zip(xs, accuracies)
        ]
    }


def _bands(ax):
    return [
        c for c in ax.collections if isinstance(c, collections.PolyCollection)
    ]


def test_transfer_curves_name_the_transfer_metric_and_axes(drawn):
    sequential = {
        "iid": [
            _curve("classes_seen", [1, 2, 3], [0.9, 0.8, 0.7]),
            _curve("classes_seen", [1, 2, 3], [0.7, 0.6, 0.5]),
        ]
    }
    iid = {"iid": [_curve("step", [5, 10], [0.2, 0.4])]}
    plots.transfer_curves(sequential)
    plots.transfer_curves(iid)
    (seq_ax,), (iid_ax,) = (fig.axes for fig in drawn)
    assert seq_ax.get_title() != iid_ax.get_title()
    assert seq_ax.get_title().startswith("Sequential transfer: test accuracy")
    assert iid_ax.get_title().startswith("i.i.d. transfer: test accuracy")
    assert seq_ax.get_xlabel() == "classes learned"
    assert seq_ax.get_ylabel() == "test accuracy on the classes seen"
    assert (iid_ax.get_xlabel(), iid_ax.get_ylabel()) == (
        "training step",
        "test accuracy",
    )
    # The mean line, its ±std band, and integer class ticks.
    np.testing.assert_allclose(seq_ax.lines[0].get_ydata(), [0.8, 0.7, 0.6])
    (band,) = _bands(seq_ax)
    lows = band.get_paths()[0].vertices[:, 1]
    assert lows.min() == pytest.approx(0.5) and lows.max() == pytest.approx(0.9)
    assert all(float(t).is_integer() for t in seq_ax.get_xticks())
    assert seq_ax.get_legend().get_texts()[0].get_text() == "iid (n=2)"


def test_mean_std_lines_have_bands_and_integer_task_ticks(drawn):
    runs = np.array([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]])
    plots.mean_std_lines({"accuracy": {"base": runs}}, [1, 2, 3], "task", "t")
    (ax,) = drawn[0].axes
    assert len(_bands(ax)) == 1
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_task_accuracies_tick_whole_tasks_from_one(drawn):
    plots.task_accuracies({"online": [0.5, None, 0.7], "test": [0.4] * 3}, "t")
    (ax,) = drawn[0].axes
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert ax.get_xlabel() == "task"


def test_accuracy_matrix_numbers_tasks_from_one(drawn):
    plots.accuracy_matrix([[0.9, None], [0.5, 0.8]], "m")
    ax = drawn[0].axes[0]
    assert ax.get_xlabel() == "evaluated on task"
    assert ax.get_ylabel() == "after training task"
    for axis in (ax.xaxis, ax.yaxis):
        shown = [
            t.get_text()
            for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs())
            if -0.5 <= v <= 1.5
        ]
        assert shown == ["1", "2"]


def test_each_transfer_protocol_plots_its_curve_file(drawn):
    for protocol, x_key in (
        (transfer.SequentialTransfer(), "classes_seen"),
        (transfer.IidTransfer(), "step"),
    ):
        protocol.best_curve = [_curve(x_key, [1, 2], [0.3, 0.5])]
        (name,) = protocol.figures({"iid": protocol})
        assert name == f"transfer_{protocol.name}"
    titles = [fig.axes[0].get_title() for fig in drawn]
    assert titles[1].startswith("i.i.d. transfer") and titles[0] != titles[1]
