"""What a person watching the terminal sees: progress and tables.

`Progress` shows how far a loop got (epochs' steps, transfer runs, tasks,
a grid's runs). When stdout is a terminal it draws a `keras.utils.Progbar`
after its label (bar, time per unit, ETA, the latest metrics); otherwise
(a log file, a pipe, a test) it prints one line per unit, which a log can
be searched for. $ZAPKERAS_PROGRESS = "lines" forces the lines on a
terminal, "bar" the bar anywhere. Lines said while a bar is drawn appear
above it. Both modes remember the last unit finished for `last_progress()`
(where a stopped run got to).
"""

import contextlib
import os
import re
import shutil
import sys
import time

from zapkeras.errors import UsageError

MODE_VARIABLE = "ZAPKERAS_PROGRESS"
_MODES = ("bar", "lines")
_REDRAW_SECONDS = 0.1  # the fastest a bar redraws between units
_CLEAR_LINE = "\r\x1b[K"
_COLOUR = re.compile(r"(\x1b\[[0-9;]*m)")

# "pretrain[iid] epoch 2/3", "transfer/sequential[iid] lr 0.01 run 1/2",
# "continual[permuted] task 3/20": a progress line up to its count.
_PROGRESS = re.compile(r"\S+\[[^\]\n]*\][^\n]*? \d+/\d+(?=  |\n|$)")
_last = []
_drawn = []  # the Progress whose bar is the terminal's last line


def bars():
    """Whether progress shows as bars: stdout is a terminal, unless
    $ZAPKERAS_PROGRESS is "bar" or "lines"."""
    mode = os.environ.get(MODE_VARIABLE, "")
    if mode and mode not in _MODES:
        raise UsageError(
            f"${MODE_VARIABLE} = {mode!r}; set it to 'lines' (one line per "
            "unit) or 'bar' (a progress bar), or unset it for a bar on a "
            "terminal and lines elsewhere."
        )
    if mode:
        return mode == "bar"
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def _remember(line):
    progress = _PROGRESS.match(line)
    if progress:
        _last[:] = [progress[0]]


def say(message):
    """Prints a line, above the bar if one is drawn; a progress line
    ("label[cond] unit i/n ...") is remembered for `last_progress()`."""
    _remember(message)
    bar = _drawn[0] if _drawn else None
    if bar is not None:
        sys.stdout.write(_CLEAR_LINE)
    print(message, file=sys.stdout, flush=True)
    if bar is not None:
        bar.redraw()


def end_line():
    """Ends the drawn bar's line where it stands, so that what follows (a
    stop message on stderr) starts a line of its own."""
    if _drawn:
        _drawn.clear()
        print(file=sys.stdout, flush=True)


def last_progress():
    """The last progress line said, up to its count, or None."""
    return _last[0] if _last else None


def metrics_text(metrics):
    """{"loss": 0.5, ...} as "loss 0.5000  ..." (None values left out)."""
    return "  ".join(f"{k} {v:.4f}" for k, v in _present(metrics))


def _present(metrics):
    items = (metrics or {}).items()
    return [(k, float(v)) for k, v in items if v is not None]


class _Labelled:
    """sys.stdout for a Progbar: its line starts with the label and is cut
    to the terminal's width (a wrapped line could not be redrawn)."""

    def __init__(self, out, label):
        self._out, self._label = out, label

    def write(self, text):
        back, _, line = text.rpartition("\r")
        end = "\n" if line.endswith("\n") else ""
        width = shutil.get_terminal_size().columns - 1
        line = _cut(f"{self._label} {line.rstrip()}", width)
        return self._out.write(f"{back}\r{line}\x1b[0m\x1b[K{end}")

    def __getattr__(self, name):
        return getattr(self._out, name)


def _cut(text, width):
    """`text` cut to `width` characters, not counting colour codes."""
    kept, left = [], width
    for i, piece in enumerate(_COLOUR.split(text)):
        if i % 2:  # a colour code
            kept.append(piece)
        else:
            kept.append(piece[: max(left, 0)])
            left -= len(piece)
    return "".join(kept)


class Progress:
    """Progress through `total` units named `unit` ("epoch", "task", ...),
    `start` of them done before (a resumed run); a context manager that
    closes it.

    On a terminal (`bars()`) a Keras Progbar after `label`: the bar, the
    time per unit and ETA of the units done since it was made, and the
    metrics of the last update. Elsewhere `update` prints one line per
    unit, "label unit i/n  metric 0.1234  ...", and `advance` nothing.
    """

    def __init__(self, label, total, unit, start=0):
        self.label, self.total, self.unit = label, total, unit
        self._done, self._values, self._drawn_at = start, {}, None
        self._bar = None
        if bars():
            from zapkeras import compat  # Keras loads only to draw a bar

            self._bar = compat.Progbar(
                total,
                start=start,
                interval=0,  # `advance` limits the redraws
                stateless_metrics=(),  # metrics shown as given
                unit_name=unit,
            )

    def update(self, done, metrics=None, at=None, line=None):
        """`done` (a whole number) units are finished, the last with these
        metrics. Off a terminal this prints `line`, by default "label at
        metrics" where `at` names the unit (default "unit done/total"); on
        one it moves the bar. Either way that line is remembered for
        `last_progress()`."""
        if line is None:
            at = at or f"{self.unit} {done}/{self.total}"
            line = "  ".join(
                part
                for part in (f"{self.label} {at}", metrics_text(metrics))
                if part
            )
        if self._bar is None:
            say(line)
            return
        _remember(line)
        self.advance(done, metrics, force=True)

    def advance(self, done, metrics=None, force=False):
        """Moves the bar to `done` units (a fraction: part of a unit, e.g.
        a trajectory's evaluation point) with these metrics, redrawing it
        at most every 0.1 s unless `force`. Prints nothing off a
        terminal."""
        if self._bar is None:
            return
        self._done = done
        self._values.update(_present(metrics))
        last = self._drawn_at
        if force or last is None or time.monotonic() - last >= _REDRAW_SECONDS:
            self._draw()

    def close(self, clear=False):
        """Leaves the bar as it ended on its own line (`clear`: erases it,
        for a summary line that follows); further calls do nothing."""
        if self._bar is None:
            return
        if clear:
            if _drawn and _drawn[0] is self:
                sys.stdout.write(_CLEAR_LINE)
                sys.stdout.flush()
        elif self._drawn_at is not None:
            self._draw(finalize=True)
        if _drawn and _drawn[0] is self:
            _drawn.clear()
        self._bar = None

    def redraw(self):
        """Draws the bar again (a line was said above it)."""
        self._draw()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _draw(self, finalize=False):
        if _drawn and _drawn[0] is not self:
            end_line()  # another bar's line stays as it was
        with contextlib.redirect_stdout(_Labelled(sys.stdout, self.label)):
            self._bar.update(
                self._done, list(self._values.items()), finalize=finalize
            )
        self._drawn_at = time.monotonic()
        _drawn[:] = [] if finalize else [self]


def mean_std(mean, std, n):
    """'mean ± std (n=N)' to 3 decimals; one run shows 'value (n=1)' (its
    std of 0 says nothing)."""
    if n == 1:
        return f"{mean:.3f} (n=1)"
    return f"{mean:.3f} ± {std:.3f} (n={n})"


def table(header, rows):
    """Formats rows of strings as an aligned plain-text table."""
    widths = [
        max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))
    ]

    def line(row):
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
