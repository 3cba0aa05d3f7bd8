"""Writing files: atomic, with the user's usual permissions, and one clear line for a path that cannot be written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from digitrec.errors import DigitrecError
from digitrec.files import atomic_write, check_output_file, check_writable_dir, make_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_written_file_gets_the_permissions_the_umask_gives_any_new_file(tmp_path: Path, umask: int, expected: int):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "submission.csv", b"ImageId,Label\n")
        atomic_write(tmp_path / "submission.csv", b"ImageId,Label\n1,7\n")  # a replaced file too
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "submission.csv") == expected
    assert (tmp_path / "submission.csv").read_bytes() == b"ImageId,Label\n1,7\n"
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]  # no temporary file left


def test_a_folder_where_a_file_belongs_is_named_and_left_alone(tmp_path: Path):
    (tmp_path / "out").mkdir()
    with pytest.raises(DigitrecError, match="is a folder; give a file name") as raised:
        atomic_write(tmp_path / "out", b"data")
    assert raised.value.source == str(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(DigitrecError, match="is a folder"):
        check_output_file(tmp_path / "out")


def test_a_file_where_a_folder_belongs_is_named(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DigitrecError, match="is a file, not a folder"):
        make_dir(tmp_path / "notes.txt")
    with pytest.raises(DigitrecError, match=f"{tmp_path / 'notes.txt'} is a file, not a folder"):
        make_dir(tmp_path / "notes.txt" / "sub" / "deeper")
    with pytest.raises(DigitrecError, match=f"^{tmp_path / 'notes.txt'}: is a file, not a folder"):
        atomic_write(tmp_path / "notes.txt" / "report.md", b"#")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_writable_folder_is_made_and_probed_without_leaving_anything(tmp_path: Path):
    folder = check_writable_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []
