"""Atomic writes: complete file or the old one, never a partial file, usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from kidneytumorseg.atomic import atomic_path, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "report.csv", "old\n")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise OSError(28, "disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_a_successful_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        target = write_text_atomic(tmp_path / "sub" / "notes.txt", "new\n")
    finally:
        os.umask(umask)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_the_temporary_keeps_the_format_suffix(tmp_path):
    with atomic_path(tmp_path / "ct.nii.gz", suffix=".nii.gz") as temporary:
        assert temporary.name.endswith(".nii.gz") and temporary.name.startswith(".")
        temporary.write_bytes(b"x")
    assert (tmp_path / "ct.nii.gz").read_bytes() == b"x"
