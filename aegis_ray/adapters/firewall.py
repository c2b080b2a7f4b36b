"""iptables rules aegis installs on its host: each one idempotent, and removed by its owner.

Used for the agents' network (adapters/docker/network.py) and for the ports of Serve's gRPC
proxy, which always listens on every interface (node/stack.py)."""

from __future__ import annotations

import shutil
import subprocess


class FirewallError(RuntimeError):
    pass


def iptables(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise FirewallError("iptables is not installed (apt-get install iptables)")
    return subprocess.run(
        [binary, "-w", "10", *args], capture_output=True, text=True, timeout=30, check=False
    )


def installed(chain: str, rule: list[str]) -> bool:
    return iptables("-C", chain, *rule).returncode == 0


def install(chain: str, rule: list[str]) -> None:
    """`rule` first in `chain`, unless it is there already."""
    if installed(chain, rule):
        return
    done = iptables("-I", chain, "1", *rule)
    if done.returncode != 0:
        raise FirewallError(f"iptables -I {chain} {' '.join(rule)}: {done.stderr.strip()}")


def remove(chain: str, rule: list[str]) -> None:
    for _ in range(8):  # bounded: a rule inserted twice by racing processes goes too
        if iptables("-D", chain, *rule).returncode != 0:
            return


def loopback_only_rule(port: int) -> list[str]:
    """TCP to `port` from anywhere but loopback: refused at once (RST)."""
    return [
        "-p", "tcp", "--dport", str(port), "!", "-i", "lo",
        "-m", "comment", "--comment", f"aegis: port {port} loopback only",
        "-j", "REJECT", "--reject-with", "tcp-reset",
    ]  # fmt: skip
