"""Atomic writes: the old file survives a failed write; the new one has the usual permissions."""

from __future__ import annotations

import os

import pytest

from vpinn.atomic import atomic_path, write_text


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_written_files_get_the_umask_permissions_not_mkstemps(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "a.csv", "x")
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o666 & ~umask
