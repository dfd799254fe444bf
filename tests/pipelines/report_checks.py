"""What every pipeline test checks in a report: the tables against the
runs' results.json, and that each figure is a real PNG in figures/, linked
from report.md, embedded in report.html and logged to TensorBoard."""

import base64
import os

import numpy as np
import tensorflow as tf

from tests.cli_utils import read_scalar_tags


def mean_std(values):
    """The report's cell, computed here from the raw values."""
    if len(values) == 1:
        return f"{values[0]:.3f} (n=1)"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f} (n={len(values)})"


def md_tables(path):
    """[(header, rows)] of every Markdown table in the file."""
    with open(path) as f:
        lines = f.read().splitlines()
    tables, current = [], None
    for line in lines:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None:
                current = (cells, [])
                tables.append(current)
            elif not all(set(c) <= {"-"} for c in cells):
                current[1].append(cells)
        else:
            current = None
    return tables


def rows_by(table, *columns):
    """{tuple of the key columns: {header: cell}} of a (header, rows)."""
    header, rows = table
    keys = [header.index(c) for c in columns]
    return {tuple(row[k] for k in keys): dict(zip(header, row)) for row in rows}


def assert_figures(root, names):
    """Each figure exists, decodes to a non-blank image, and is in the
    Markdown, the HTML and TensorBoard."""
    with open(os.path.join(root, "report.md")) as f:
        markdown = f.read()
    with open(os.path.join(root, "report.html")) as f:
        page = f.read()
    tags = read_scalar_tags(os.path.join(root, "tensorboard"))
    listed = sorted(os.listdir(os.path.join(root, "figures")))
    assert listed == sorted(f"{n}.png" for n in names)
    for name in names:
        path = os.path.join(root, "figures", f"{name}.png")
        with open(path, "rb") as f:
            png = f.read()
        image = tf.io.decode_png(png).numpy()
        assert image.shape[0] > 100 and image.shape[1] > 100, name
        assert image[..., :3].std() > 10, f"{name} is blank"
        assert f"(figures/{name}.png)" in markdown
        assert base64.b64encode(png).decode("ascii") in page
        assert f"report/{name}" in tags
    assert page.count("data:image/png;base64,") == len(names)
