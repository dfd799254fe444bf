"""A study's report: OUTPUT_DIR/report.md and a self-contained report.html
with the same headings, tables and figures.

Figures are PNG files in OUTPUT_DIR/figures/ (linked from the Markdown,
embedded as data URIs in the HTML so the page can be sent on its own) and
TensorBoard images `report/<name>` in OUTPUT_DIR/tensorboard/, beside the
report text (`report/markdown`).
"""

import base64
import html
import os

from pipelines import progress
from zapkeras.outputs import files
from zapkeras.outputs import tensorboard

_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
    "line-height:1.4}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "figure{margin:1.5em 0}img{max-width:100%}"
    "figcaption{color:#444;font-size:90%}"
)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header, rows):
    cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = [f"<tr>{cells}</tr>"]
    for row in rows:
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    return "<table>\n" + "\n".join(body) + "\n</table>"


def grid_section(rep, runs, root, scale):
    """How much of the grid the report rests on: counts, and the runs
    that did not finish (with the exit code of those that failed)."""
    statuses = progress.status(
        root, [(r.name, r.seed, r.output_dir(root)) for r in runs]
    )
    c = progress.summary(statuses)["counts"]
    rep.paragraph(
        f"Scale {scale}: {len(runs)} runs, {c['done']} done, {c['failed']} "
        f"failed, {c['running']} running, {c['pending']} not run; tables "
        "and figures use the runs that finished."
    )
    missing = [
        [name, seed, st, details.get("exit_code", "")]
        for name, seed, _, st, details in statuses
        if st != progress.DONE
    ]
    if missing:
        rep.table(["run", "seed", "state", "exit code"], missing)


class Report:
    """Blocks (headings, paragraphs, tables, figures) in order, written
    as Markdown and HTML by `write()`."""

    def __init__(self, root, title):
        self.root, self.title = root, title
        self._blocks = []  # (markdown, html)
        self._figures = set()  # names of this report's PNGs
        self._writer = None

    def heading(self, text, level=2):
        self._blocks.append(
            (
                f"{'#' * level} {text}",
                f"<h{level}>{html.escape(text)}</h{level}>",
            )
        )

    def paragraph(self, text):
        self._blocks.append((text, f"<p>{html.escape(text)}</p>"))

    def table(self, header, rows):
        self._blocks.append(
            (markdown_table(header, rows), _html_table(header, rows))
        )

    def figure(self, name, png, caption):
        """Saves figures/<name>.png, logs it to TensorBoard and places it
        here in the report. `name` is unique within the report."""
        if name in self._figures:
            raise ValueError(f"two report figures named {name!r}")
        path = os.path.join(self.root, "figures", f"{name}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        self._figures.add(name)
        self._tensorboard().image(f"report/{name}", png)
        data = base64.b64encode(png).decode("ascii")
        self._blocks.append(
            (
                f"![{caption}](figures/{name}.png)\n\n*{caption}*",
                f'<figure><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(caption)}"><figcaption>'
                f"{html.escape(caption)}</figcaption></figure>",
            )
        )

    def _tensorboard(self):
        if self._writer is None:
            self._writer = tensorboard.Writer(
                os.path.join(self.root, "tensorboard")
            )
        return self._writer

    def write(self, name="report"):
        """Writes <name>.md and <name>.html (removing figures an earlier
        report of this grid had and this one has not); returns the
        Markdown."""
        folder = os.path.join(self.root, "figures")
        for old in os.listdir(folder) if os.path.isdir(folder) else ():
            if old.endswith(".png") and old[:-4] not in self._figures:
                os.remove(os.path.join(folder, old))
        markdown = "\n\n".join(
            [f"# {self.title}"] + [md for md, _ in self._blocks]
        )
        page = "\n".join(
            [
                "<!DOCTYPE html>",
                '<html><head><meta charset="utf-8">',
                f"<title>{html.escape(self.title)}</title>",
                f"<style>{_STYLE}</style></head><body>",
                f"<h1>{html.escape(self.title)}</h1>",
                *(h for _, h in self._blocks),
                "</body></html>",
            ]
        )
        path = os.path.join(self.root, name)
        files.write_atomic(f"{path}.md", markdown + "\n")
        files.write_atomic(f"{path}.html", page + "\n")
        writer = self._tensorboard()
        writer.text(f"{name}/markdown", markdown)
        writer.close()
        self._writer = None
        return markdown
