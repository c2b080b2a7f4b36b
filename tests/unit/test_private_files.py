"""The one writer of private files (tokens, passwords, state with a database URL)."""

import os
import stat
from pathlib import Path

import pytest

from aegis_ray.adapters.files import make_private_home, read_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_private_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "dir" / "token"
        write_private(path, "s3cret")
    finally:
        os.umask(old)
    assert path.read_text() == "s3cret"
    assert mode(path) == 0o600


def test_replacing_swaps_the_whole_file_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    path = tmp_path / "up.json"
    path.write_text("old and much longer content")
    path.chmod(0o644)
    inode = path.stat().st_ino
    write_private(path, "new")
    assert path.read_text() == "new"
    assert mode(path) == 0o600
    assert path.stat().st_ino != inode  # renamed over, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.json"]


def test_create_only_keeps_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    write_private(path, "first", replace=False)
    with pytest.raises(FileExistsError):
        write_private(path, "second", replace=False)
    assert path.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.token"]


def test_reading_a_secret_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "db.password"
    write_private(path, "pw\n")
    assert read_private(path, what="AEGIS_DATABASE_PASSWORD_FILE") == "pw"
    path.chmod(0o640)
    with pytest.raises(PermissionError) as info:
        read_private(path, what="AEGIS_DATABASE_PASSWORD_FILE")
    assert str(info.value) == (
        f"AEGIS_DATABASE_PASSWORD_FILE {path}: mode 0640 lets other users read or change it; "
        f"make it private with `chmod 600 {path}`"
    )
    with pytest.raises(PermissionError, match="cannot read it"):
        read_private(tmp_path / "absent", what="AEGIS_DATABASE_PASSWORD_FILE")


def test_aegis_home_is_made_private_without_touching_what_is_not_aegis_s(tmp_path: Path) -> None:
    """Issue 12, item 8: AEGIS_HOME 0700, aegis's own entries closed to others (also those an
    earlier version left open), a stranger's file in it and the parent left as they are."""
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o755)
    home = parent / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "ray.log").write_text("x")
    (home / "up.json").write_text("{}")
    (home / "mine.txt").write_text("not aegis's")
    for path, bits in ((home, 0o755), (home / "logs", 0o755), (home / "logs" / "ray.log", 0o644),
                       (home / "up.json", 0o644), (home / "mine.txt", 0o644)):  # fmt: skip
        path.chmod(bits)
    parent_mode = parent.stat().st_mode
    make_private_home(home, ("logs", "up.json", "temporal"))
    assert mode(home) == 0o700
    assert (mode(home / "logs"), mode(home / "logs" / "ray.log")) == (0o700, 0o600)
    assert mode(home / "up.json") == 0o600
    assert mode(home / "mine.txt") == 0o644
    assert parent.stat().st_mode == parent_mode
