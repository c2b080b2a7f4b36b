"""Fixtures shared by unit tests."""

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with no AEGIS_* variable but AEGIS_HOME (a fresh folder)."""
    for key in list(os.environ):
        if key.startswith("AEGIS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AEGIS_HOME", str(tmp_path / "home"))
    return monkeypatch
