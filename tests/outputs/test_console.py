"""Progress off a terminal (one line per unit, the format logs are searched
for) and on one (a Keras Progbar with rate and ETA), and the position
`last_progress()` reports for a stopped run in both."""

import io
import re
import time

import keras
import numpy as np
import pytest

from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.protocols.pretrain import EpochProgress


@pytest.fixture(autouse=True)
def _fresh_console():
    """No bar drawn and nothing remembered from another test."""
    console._drawn.clear()
    console._last.clear()
    yield
    console._drawn.clear()
    console._last.clear()


@pytest.fixture
def lines(monkeypatch):
    monkeypatch.setenv(console.MODE_VARIABLE, "lines")


@pytest.fixture
def bar(monkeypatch):
    monkeypatch.setenv(console.MODE_VARIABLE, "bar")
    monkeypatch.setenv("COLUMNS", "200")  # the terminal's width


def _visible(text):
    """What the terminal line shows at the end of `text`."""
    return re.sub(r"\x1b\[[0-9;]*[mK]", "", text.rsplit("\r", 1)[-1])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_mode_follows_the_terminal_unless_the_variable_says(monkeypatch):
    monkeypatch.delenv(console.MODE_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert not console.bars()
    monkeypatch.setattr("sys.stdout", _Terminal())
    assert console.bars()
    monkeypatch.setenv(console.MODE_VARIABLE, "lines")
    assert not console.bars()
    monkeypatch.setenv(console.MODE_VARIABLE, "bar")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert console.bars()
    monkeypatch.setenv(console.MODE_VARIABLE, "fancy")
    with pytest.raises(UsageError, match="ZAPKERAS_PROGRESS.*'fancy'"):
        console.bars()


def test_off_a_terminal_one_line_per_unit(lines, capsys):
    with console.Progress("continual[permuted]", 3, "task", start=1) as p:
        for task in (1, 2):
            p.advance(task + 0.5)  # within a unit: no line
            p.update(task + 1, {"test_accuracy": task / 4, "skipped": None})
    assert capsys.readouterr().out.splitlines() == [
        "continual[permuted] task 2/3  test_accuracy 0.2500",
        "continual[permuted] task 3/3  test_accuracy 0.5000",
    ]
    assert console.last_progress() == "continual[permuted] task 3/3"


def test_off_a_terminal_a_named_unit_and_a_custom_line(lines, capsys):
    p = console.Progress("transfer/sequential[iid]", 4, "run")
    p.update(1, {"test acc": 0.25}, at="lr 0.01 run 1/2")
    assert console.last_progress() == "transfer/sequential[iid] lr 0.01 run 1/2"
    p.update(1, line="[1/4 done, 1 running, 0 failed, ETA ?] a seed 1")
    p.close()
    assert capsys.readouterr().out.splitlines() == [
        "transfer/sequential[iid] lr 0.01 run 1/2  test acc 0.2500",
        "[1/4 done, 1 running, 0 failed, ETA ?] a seed 1",
    ]


def test_on_a_terminal_a_progbar_with_rate_and_eta(bar, capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # Progbar's clock
    p = console.Progress("continual[permuted]", 10, "task", start=2)
    for done in (3, 4):
        clock[0] += 30  # 30 s per task
        p.update(done, {"test_accuracy": 0.5})
    out = capsys.readouterr().out
    now = _visible(out)
    assert now.startswith("continual[permuted] ")
    assert "4/10" in now and "━" in now
    # 30 s/task, counted from the resumed start (2 tasks were done before),
    # and 6 tasks left: ETA 3:00.
    assert "30s/task" in now and "3:00" in now
    assert "test_accuracy: 0.5000" in now
    assert "\n" not in out  # redrawn in place, no line per unit
    assert console.last_progress() == "continual[permuted] task 4/10"
    p.advance(4.5)  # within a unit: the bar moves, the position stays
    assert console.last_progress() == "continual[permuted] task 4/10"
    p.close()
    assert capsys.readouterr().out.endswith("\n")  # the final bar stays


def test_a_bar_is_cut_to_the_terminal_width(bar, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    p = console.Progress("pretrain[a_long_condition_name] epoch 1/9", 9, "step")
    p.advance(1, {"loss": 1.0, "accuracy": 0.5})
    line = _visible(capsys.readouterr().out)
    assert len(line) == 39 and line.startswith("pretrain[a_long")


def test_on_a_terminal_lines_said_go_above_the_bar(bar, capsys):
    p = console.Progress("transfer/iid[iid]", 2, "run")
    p.update(1, {"test acc": 0.5}, at="lr 0.1 run 1/2")
    console.say("a message")
    out = capsys.readouterr().out
    assert "\x1b[Ka message\n" in out
    below = _visible(out.rsplit("\n", 1)[-1])
    assert below.startswith("transfer/iid[iid] 1/2")  # drawn again
    assert console.last_progress() == "transfer/iid[iid] lr 0.1 run 1/2"
    console.end_line()  # e.g. before a stop message on stderr
    assert capsys.readouterr().out == "\n"
    p.close(clear=True)
    assert capsys.readouterr().out == ""  # its line was ended, not erased


def test_a_cleared_bar_leaves_nothing_behind(bar, capsys):
    p = console.Progress("pretrain[iid] epoch 1/2", 3, "step")
    p.advance(1, {"loss": 1.0})
    p.close(clear=True)
    out = capsys.readouterr().out
    assert out.endswith("\r\x1b[K") and "1/3" in out
    console.say("summary")
    assert capsys.readouterr().out == "summary\n"  # no bar redrawn


def _fit(epochs=2, steps=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")],
    )
    x = np.random.default_rng(0).normal(size=(steps * 2, 4))
    y = np.arange(steps * 2) % 2
    model.fit(
        x,
        y,
        batch_size=2,
        epochs=epochs,
        callbacks=[EpochProgress("pretrain[tiny]", epochs)],
        verbose=0,
    )


def test_pretraining_progress_off_a_terminal_one_line_per_epoch(lines, capsys):
    _fit()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2, out
    for epoch, line in enumerate(out, 1):
        assert line.startswith(f"pretrain[tiny] epoch {epoch}/2  accuracy ")
        assert "  loss " in line and line.endswith("s)")
    assert console.last_progress() == "pretrain[tiny] epoch 2/2"


def test_pretraining_progress_on_a_terminal_a_bar_per_epoch(bar, capsys):
    _fit()
    out = capsys.readouterr().out
    assert "\rpretrain[tiny] epoch 1/2 " in out and "/step" in out
    # Each epoch's bar is erased ("\r\x1b[K") and its line said instead.
    summaries = [line.rsplit("\x1b[K", 1)[-1] for line in out.split("\n")]
    assert [s.split("  ")[0] for s in summaries] == [
        "pretrain[tiny] epoch 1/2",
        "pretrain[tiny] epoch 2/2",
        "",
    ]
    assert console.last_progress() == "pretrain[tiny] epoch 2/2"
