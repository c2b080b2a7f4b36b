"""Secret files on the node: only ever on a memory file system, private, and cleaned up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aegis_ray.adapters.docker.container import LaunchError
from aegis_ray.adapters.docker.secret_files import LEFTOVER_AFTER_S, SecretFiles, filesystem_of


def test_the_file_system_of_a_path_is_that_of_its_longest_mount_point(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "overlay / overlay rw 0 0\n"
        "tmpfs /dev/shm tmpfs rw 0 0\n"
        "tmpfs /dev/shm/x\\040y tmpfs rw 0 0\n"
        "ext4 /dev/shmem ext4 rw 0 0\n"
    )
    assert filesystem_of(Path("/dev/shm/aegis-secrets"), mounts) == "tmpfs"
    assert filesystem_of(Path("/dev/shmem/a"), mounts) == "ext4"  # not a prefix match
    assert filesystem_of(Path("/var/lib"), mounts) == "overlay"


@pytest.mark.skipif(os.geteuid() != 0, reason="files are given to uid 65534: needs root")
def test_files_are_0400_for_the_container_user_and_removed_with_it() -> None:
    files = SecretFiles(Path("/dev/shm/aegis-secrets-unit"))
    mounts = files.write("aegis-unit-a1", [("/run/secrets/a", "value-a"), ("/etc/b", "value-b")])
    try:
        assert [(m["Target"], m["ReadOnly"], m["Type"]) for m in mounts] == [
            ("/run/secrets/a", True, "bind"),
            ("/etc/b", True, "bind"),
        ]
        host = Path(mounts[0]["Source"])
        st = host.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o400, 65534, 65534)
        assert host.parent.stat().st_mode & 0o777 == 0o700
        assert files.read("aegis-unit-a1", 2) == ["value-a", "value-b"]
        files.keep_only([])  # fresh: another agent may be starting it
        assert host.exists()
        old = time.time() - LEFTOVER_AFTER_S - 1
        os.utime(host.parent, (old, old))
        files.keep_only(["aegis-other-a1"])
        assert not host.parent.exists()
    finally:
        files.remove("aegis-unit-a1")
        files.base.rmdir()


def test_files_are_refused_where_they_would_reach_a_disk(tmp_path: Path) -> None:
    files = SecretFiles(tmp_path / "secrets")  # tmp_path is not a tmpfs here
    if filesystem_of(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("this machine's temporary folder is a tmpfs")
    with pytest.raises(LaunchError) as err:
        files.write("aegis-x-a1", [("/run/secrets/a", "v")])
    assert err.value.code == "secrets_unavailable" and "is not a tmpfs" in err.value.message
    assert files.write("aegis-x-a1", []) == []  # nothing to write, nothing checked
