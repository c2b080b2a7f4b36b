"""An agent's output cannot drive the terminal of whoever reads it (issue 12, item 9)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aegis_ray.cli.main import app
from aegis_ray.cli.render import terminal_safe
from aegis_ray.cli.session import Session
from aegis_ray.contract.executions import End, ExecutionState, LogLine

# A window title (OSC 0 ending in BEL), a colour (CSI), a clear screen, an 8-bit CSI (U+009B),
# a carriage return that would hide what came before, a backspace and DEL.
HOSTILE = "\x1b]0;pwned\x07red:\x1b[31mX\x1b[0m\x1b[2J \x9b1m \rover\x08\x7f\ttab"


def test_control_characters_are_shown_not_acted_on() -> None:
    safe = terminal_safe(HOSTILE)
    assert safe == (
        "\\x1b]0;pwned\\x07red:\\x1b[31mX\\x1b[0m\\x1b[2J \\x9b1m \\x0dover\\x08\\x7f\ttab"
    )
    assert not any(ord(c) < 0x20 and c not in "\t\n" for c in safe)
    assert not any(0x7F <= ord(c) <= 0x9F for c in safe)


def test_printable_text_tab_newline_and_unicode_pass_unchanged() -> None:
    text = "héllo\twörld — ✓ 日本\nnext ÿ"
    assert terminal_safe(text) == text


class _Rec:
    id = "e" * 32

    def __init__(self, state: str) -> None:
        self.state = state

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "exit_code": 0}


class _FakeClient:
    """Answers `aegis logs` and `logs -f` with lines holding escape sequences."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.lines = [
            LogLine(id=i, execution_id="e" * 32, attempt=1, ts=now, stream="stdout", line=HOSTILE)
            for i in (1, 2)
        ]

    def get(self, execution_id: str) -> _Rec:
        return _Rec("SUCCEEDED")

    def wait(self, execution_id: str, **_: Any) -> _Rec:
        return _Rec("SUCCEEDED")

    def submit(self, text: str, source: str | None = None, **_: Any) -> _Rec:
        return _Rec("PENDING")

    def logs(self, execution_id: str) -> Iterator[LogLine]:
        yield self.lines[0]

    def watch(self, execution_id: str, **_: Any) -> Iterator[LogLine | End]:
        yield self.lines[1]
        yield End(state=ExecutionState.SUCCEEDED)


@pytest.mark.parametrize("follow", [False, True])
def test_logs_escape_by_default_and_raw_passes_through(
    monkeypatch: pytest.MonkeyPatch, follow: bool
) -> None:
    fake = _FakeClient()
    monkeypatch.setattr(Session, "client", lambda self: fake)
    runner = CliRunner()
    args = ["logs", "eeee"] + (["-f"] if follow else [])
    safe = runner.invoke(app, args)
    raw = runner.invoke(app, [*args, "--raw"])
    assert safe.exit_code == 0 and raw.exit_code == 0, safe.output + raw.output
    expected = 2 if follow else 1
    assert safe.output == (terminal_safe(HOSTILE) + "\n") * expected
    assert "\x1b" not in safe.output and "\x9b" not in safe.output
    assert raw.output == (HOSTILE + "\n") * expected


def test_submit_follow_escapes_by_default_and_raw_passes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = Path(__file__).parents[2] / "examples" / "hello-agent.yaml"
    fake = _FakeClient()
    monkeypatch.setattr(Session, "client", lambda self: fake)
    runner = CliRunner()
    safe = runner.invoke(app, ["submit", str(manifest), "-f"])
    raw = runner.invoke(app, ["submit", str(manifest), "-f", "--raw"])
    assert safe.exit_code == 0 and raw.exit_code == 0, safe.output + raw.output
    assert terminal_safe(HOSTILE) + "\n" in safe.output
    assert "\x1b" not in safe.output and "\x9b" not in safe.output
    assert HOSTILE + "\n" in raw.output
