"""Private files (tokens, passwords, state holding a database URL): the one way they are written."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
# What a process creates under this mask is its user's only (0600 files, 0700 directories).
PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """From now on, this process and every daemon it starts create private files only."""
    os.umask(PRIVATE_UMASK)


def make_private_home(home: Path, entries: tuple[str, ...]) -> None:
    """`home` (AEGIS_HOME) 0700, and its `entries` (what aegis keeps there, with everything
    below them) closed to group and others: a home made by an earlier version is tightened.

    Nothing else in `home` is touched (AEGIS_HOME may be a folder holding other things), nor any
    directory above it (those created here get the usual mode); symbolic links are not
    followed."""
    home.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    home.chmod(PRIVATE_DIR_MODE)
    for entry in entries:
        top = home / entry
        if not top.exists() or top.is_symlink():
            continue
        _tighten(top)
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                _tighten(Path(root, name))


def _tighten(path: Path) -> None:
    st = os.lstat(path)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


def write_private(path: Path, text: str, *, replace: bool = True) -> None:
    """Write `text` to `path` readable by this user only, atomically.

    The content goes to a temporary file in the same folder, created 0600 (so no other user
    ever sees a readable copy), and is then renamed over `path`: a reader sees the old file or
    the new one, never half of it. With ``replace=False`` an existing `path` is kept and
    FileExistsError raised, decided atomically too (a hard link fails if the name exists).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp creates the file 0600
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_private(path: Path, *, what: str) -> str:
    """The stripped text of a secret file that no other user can read or change.

    `what` names where the path came from (a setting or option) for the error message.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as err:
        raise PermissionError(f"{what} {path}: cannot read it: {err.strerror}") from None
    if mode & 0o077:
        raise PermissionError(
            f"{what} {path}: mode {mode:04o} lets other users read or change it; "
            f"make it private with `chmod 600 {path}`"
        )
    return text.strip()
