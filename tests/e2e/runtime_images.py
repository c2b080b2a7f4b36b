"""A tiny local image for the container runtime tests: no registry is reachable here."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import docker
from docker.errors import ImageNotFound

EXAMPLE_IMAGE = "aegis-examples/agent:latest"
TEST_IMAGE = "aegis-test/busybox:latest"
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
"""


def busybox_image(client: docker.DockerClient) -> str:
    """The example agent image when built, else a busybox image built from the host's binary."""
    for name in (EXAMPLE_IMAGE, TEST_IMAGE):
        try:
            client.images.get(name)
            return name
        except ImageNotFound:
            pass
    ctx = Path(tempfile.mkdtemp(prefix="aegis-test-image-"))
    try:
        shutil.copy2("/bin/busybox", ctx / "busybox")
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        client.images.build(path=str(ctx), tag=TEST_IMAGE, rm=True)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return TEST_IMAGE
