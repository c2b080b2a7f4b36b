"""Machines of their own on this host: one network namespace per node, each with its own address.

A hub namespace holds a bridge that every node's veth joins, and one more veth links the host
to it, so tests reach every node by its address. The bridge lives in the hub, not on the host:
the host's firewall (Docker's FORWARD DROP) never sees the traffic between nodes. Each node
also gets a default route through a gateway address that no one holds, so that packets for
elsewhere are dropped there (nothing resolves it; the hub forwards nothing): Ray finds its own
address by "connecting" a UDP socket to a public address, which needs a route but sends nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    cmd = ["ip", *(("-n", ns) if ns else ()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


@dataclass
class Netns:
    """Namespaces `<prefix>-<name>`, addresses `<subnet>.<host>` (a /24); the host is .1."""

    prefix: str
    subnet: str
    hosts: Mapping[str, int]
    made: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def address(self, name: str) -> str:
        return f"{self.subnet}.{self.hosts[name]}"

    @property
    def nowhere(self) -> str:
        """A gateway no one answers for: packets routed to it are dropped in the namespace."""
        return f"{self.subnet}.254"

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.1"

    def up(self) -> None:
        self.down()  # what a killed earlier run left
        hub = self.ns("hub")
        _ip("netns", "add", hub)
        self.made.append(hub)
        _ip("link", "add", "br0", "type", "bridge", ns=hub)
        _ip("link", "set", "br0", "up", ns=hub)
        host_if = f"{self.prefix}-h"
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "to-host", "netns", hub)
        _ip("addr", "add", f"{self.host_address}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("link", "set", "to-host", "master", "br0", "up", ns=hub)
        for name in self.hosts:
            ns = self.ns(name)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("link", "add", "eth0", "type", "veth", "peer", "name", f"to-{name}", "netns", hub,
                ns=ns)  # fmt: skip
            _ip("link", "set", f"to-{name}", "master", "br0", "up", ns=hub)
            _ip("addr", "add", f"{self.address(name)}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("route", "add", "default", "via", self.nowhere, ns=ns)

    def down(self) -> None:
        """Remove the namespaces (their veths go with them) and the host's veth."""
        names = [self.ns("hub"), *(self.ns(n) for n in self.hosts)]
        for ns in names:
            _ip("netns", "delete", ns, check=False)
        _ip("link", "delete", f"{self.prefix}-h", check=False)
        self.made.clear()
        # A head started in a namespace wrote its address where Ray's "auto" looks for the newest
        # local head; once the namespaces are gone, that address would route off this machine.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().startswith(f"{self.subnet}."):
            current.unlink()

    def command(self, name: str, cmd: Sequence[str]) -> list[str]:
        """`cmd` run inside node `name`'s namespace."""
        return ["ip", "netns", "exec", self.ns(name), *cmd]
