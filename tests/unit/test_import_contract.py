"""The pure core stays pure: importing it loads no adapter library, and the contract bites."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADAPTER_LIBRARIES = ("ray", "docker", "asyncpg", "temporalio", "grpc", "fastapi", "httpx")


def _loaded_after(statement: str) -> set[str]:
    code = textwrap.dedent(
        f"""
        import sys
        {statement}
        print(",".join(sorted({{m.split(".")[0] for m in sys.modules}})))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(out.stdout.strip().split(","))


def test_importing_the_core_loads_no_adapter_library() -> None:
    loaded = _loaded_after(
        "import aegis_ray.core.models, aegis_ray.core.placement, aegis_ray.core.ray_mapping,"
        " aegis_ray.core.registry, aegis_ray.core.interleave"
    )
    assert loaded.isdisjoint(ADAPTER_LIBRARIES), loaded & set(ADAPTER_LIBRARIES)


def test_the_import_contract_fails_on_a_core_module_that_imports_ray(tmp_path: Path) -> None:
    # A copy of the package with one violating import added: lint-imports must refuse it.
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "aegis_ray", copy / "aegis_ray")
    shutil.copy(REPO / ".importlinter", copy / ".importlinter")
    bad = copy / "aegis_ray" / "core" / "placement" / "fit.py"
    bad.write_text(bad.read_text() + "\nimport ray  # a violation\n")
    run = subprocess.run(
        ["lint-imports", "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(copy), "PATH": _path()},
    )
    assert run.returncode != 0, run.stdout
    assert "aegis_ray.core is not allowed to import ray" in run.stdout, run.stdout


def _path() -> str:
    import os

    return os.environ.get("PATH", "")
