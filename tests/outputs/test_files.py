"""Atomic writes: the whole file or the previous one, with normal modes."""

import os
import stat

import pytest

from zapkeras.outputs import files


def test_write_atomic_replaces_whole_file_with_umask_mode(tmp_path):
    path = str(tmp_path / "results.json")
    files.write_json(path, {"a": 1})
    files.write_json(path, {"a": 2})
    assert files.read_json(path) == {"a": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["results.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / "results.json")
    files.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        files.write_json(path, {"a": object()})
    assert files.read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["results.json"]
