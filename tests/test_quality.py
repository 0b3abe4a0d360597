"""Static checks run as tests, so `make test` is the one gate: ruff, mypy and the layering contracts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = run_tool(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    result = run_tool(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_layering_contracts_hold() -> None:
    """controller -> agent -> env, and the simulator and live backend never import each other."""
    result = run_tool(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cited_documents_are_in_the_repository() -> None:
    """Docstrings, configs and READMEs cite ``docs/*.md`` files that exist, never a design note outside the tree."""
    cited: set[str] = set()
    outside = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.suffix not in {".py", ".md", ".yaml", ".json", ".ipynb"} or parts[0].startswith((".", "outputs")):
            continue
        text = path.read_text(errors="replace")
        cited |= set(re.findall(r"docs/[a-z_]+\.md", text))
        if re.search(r"DESIGN (§|\\u00a7)", text):
            outside.append(str(path.relative_to(ROOT)))
    assert not outside, f"cite docs/*.md, not a design note outside the repository: {outside}"
    assert {"docs/metrics.md", "docs/architecture.md"} <= cited
    assert all((ROOT / name).is_file() for name in cited), sorted(name for name in cited if not (ROOT / name).is_file())
