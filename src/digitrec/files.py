"""Writing files safely: atomically, with the user's usual permissions, and one clear line when a path cannot take them.

Every file digitrec writes goes through :func:`atomic_write`, and every folder it creates through
:func:`make_dir`, so that a folder given where a file belongs, a file given where a folder belongs or
a folder nobody may write in ends as a :class:`DigitrecError` naming the path, before anything is
half-written and without touching what was there.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from digitrec.errors import DigitrecError


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def make_dir(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents) unless it exists; a one-line error if it cannot be one."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise DigitrecError("is a file, not a folder", str(path))
    for parent in path.parents:  # a file standing where a parent folder should be: name it, not the path
        if parent.exists():
            if not parent.is_dir():
                raise DigitrecError(f"{parent} is a file, not a folder", str(path))
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DigitrecError(f"cannot create this folder ({_reason(e)})", str(path)) from None
    return path


def check_writable_dir(path: str | Path) -> Path:
    """``path`` as a folder that files can be created in (made if missing), checked by creating one."""
    folder = make_dir(path)
    probe = folder / f".digitrec-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise DigitrecError(f"cannot write in this folder ({_reason(e)})", str(folder)) from None
    probe.unlink()
    return folder


def check_output_file(path: str | Path) -> Path:
    """``path`` as a file to be written: not a folder, in a folder that can be written in."""
    path = Path(path)
    if path.is_dir():
        raise DigitrecError("is a folder; give a file name", str(path))
    check_writable_dir(path.parent)
    return path


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The new file gets the permissions any program's new file gets (0666 less the umask), not the
    0600 of :func:`tempfile.mkstemp`: submissions, reports and exports are meant to be shared.
    """
    path = Path(path)
    if path.is_dir():
        raise DigitrecError("is a folder; give a file name", str(path))
    make_dir(path.parent)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise DigitrecError(f"cannot write here ({_reason(e)})", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DigitrecError("the disk is full; the previous version of this file is intact", str(path)) from None
        raise DigitrecError(f"cannot write here ({_reason(e)})", str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refuse_pickle(blob: bytes, source: str, loads: str) -> None:
    """Refuses a pickle or a ``torch.save`` file (a zip of pickles) from its first bytes, before anything reads it:
    unpickling can run arbitrary code. ``loads`` says what digitrec loads instead."""
    if blob[:1] == b"\x80" or blob[:2] == b"PK":
        raise DigitrecError(f"this is a pickle or torch.save file; digitrec never unpickles (it can run arbitrary code) "
                            f"and loads only {loads}", source)
