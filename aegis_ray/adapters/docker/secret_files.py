"""Secret files of agent containers: on the node's tmpfs, bind-mounted read-only, one by one.

Each container with secret files gets a directory (0700, root) under `BASE`, which must be on a
tmpfs: a value is never written to a disk. Each file there is mode 0400 and owned by the
container's user (65534), and is mounted read-only at the path the manifest names. The node
agent removes the directory with the container; after its own restart it reads the files back
to redact their values again (they are still there while the container is).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from docker.types import Mount

from aegis_ray.adapters.docker.container import LaunchError

BASE = Path("/dev/shm/aegis-secrets")
CONTAINER_UID = CONTAINER_GID = 65534  # runtime.NOBODY
_MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")
# Another agent on this host (one per node, several nodes on one engine) may be creating a
# container right now: its fresh files are not a leftover.
LEFTOVER_AFTER_S = 300.0


def filesystem_of(path: Path, mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """The type of the file system holding `path` (the longest mount point above it)."""
    best, kind = "", None
    target = str(path)
    for line in mounts.read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


class SecretFiles:
    """The secret files of this node's containers (see the module docstring)."""

    def __init__(self, base: Path = BASE) -> None:
        self.base = base

    def _dir(self, container_name: str) -> Path:
        return self.base / container_name

    def write(self, container_name: str, files: list[tuple[str, str]]) -> list[Mount]:
        """Write (container path, value) files for a container; the mounts that show them."""
        if not files:
            return []
        kind = filesystem_of(self.base.parent)
        if kind not in _MEMORY_FILESYSTEMS:
            raise LaunchError(
                "secrets_unavailable",
                f"{self.base.parent} is not a tmpfs on this node (it is {kind}): secret files "
                "are only ever written to memory",
            )
        if os.geteuid() != 0:
            raise LaunchError(
                "secrets_unavailable",
                "secret files need the node agent to run as root: the file is given to the "
                f"container's user (uid {CONTAINER_UID}) with mode 0400",
            )
        self.base.mkdir(mode=0o700, exist_ok=True)
        folder = self._dir(container_name)
        self.remove(container_name)  # a leftover of an earlier try of this very attempt
        folder.mkdir(mode=0o700)
        mounts = []
        try:
            for index, (target, value) in enumerate(files):
                host = folder / str(index)
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
                with os.fdopen(fd, "w") as f:
                    f.write(value)
                os.chown(host, CONTAINER_UID, CONTAINER_GID)
                mounts.append(Mount(target, str(host), type="bind", read_only=True))
        except OSError as err:
            self.remove(container_name)
            raise LaunchError(
                "secrets_unavailable", f"writing secret files under {folder}: {err.strerror}"
            ) from None
        return mounts

    def read(self, container_name: str, count: int) -> list[str]:
        """The values of a container's `count` files (OSError if one is gone)."""
        return [(self._dir(container_name) / str(i)).read_text() for i in range(count)]

    def remove(self, container_name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._dir(container_name))

    def keep_only(self, container_names: Iterable[str]) -> None:
        """Remove the files of every container not named (gone while the agent was down)."""
        if not self.base.exists():
            return
        keep = set(container_names)
        for folder in self.base.iterdir():
            with contextlib.suppress(FileNotFoundError):
                old = time.time() - folder.stat().st_mtime > LEFTOVER_AFTER_S
                if folder.name not in keep and old:
                    self.remove(folder.name)
