"""Static checks run as tests, so `make test` is the one gate: ruff, mypy, the layering contracts, and no
code path that reads beside the repository."""

from __future__ import annotations

import os
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
    """controller -> agent -> env, the simulator and live backend never import each other, and none of them
    imports the local cluster (``localcluster``), which imports ``env`` alone."""
    result = run_tool(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


# A user's clone has nothing beside it, so no code path may look there. The patterns are spelled so that this
# file does not match them itself.
BESIDE_REPOSITORY = re.compile(r"\.\./shared\b|parents?(\[\d+\])?\s*/\s*[\"']shared[\"']|DISAGGPILOT_SHARE[D]")
SKIPPED_FOLDERS = frozenset({".venv", ".venv-vllm", ".git", "outputs", "multirun", "runs", "node_modules",
                             "__pycache__"})
"""Folders that hold installed packages, version control or run output rather than the project's code."""


def is_scanned(relative: Path) -> bool:
    """Whether a file holds code paths: Python anywhere, the Makefile, CI, shell scripts, configs' YAML."""
    top = relative.parts[0]
    return (relative.suffix == ".py" or relative == Path("Makefile") or (top == ".ci" and len(relative.parts) == 2)
            or (top == "scripts" and relative.suffix == ".sh") or (top == "configs" and relative.suffix == ".yaml"))


def scanned_files(root: Path) -> list[Path]:
    """The files under ``root`` that :func:`is_scanned` accepts; installed environments are not entered."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
        found += [Path(folder, name) for name in names if is_scanned(Path(folder, name).relative_to(root))]
    return sorted(found)


def lines_beside_repository(root: Path) -> list[str]:
    """``file:line: text`` for every scanned line under ``root`` that reads beside the repository."""
    return [f"{path.relative_to(root)}:{number}: {line.strip()}"
            for path in scanned_files(root)
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if BESIDE_REPOSITORY.search(line)]


def test_nothing_reads_beside_the_repository() -> None:
    assert {ROOT / "env" / "trace.py", ROOT / "Makefile"} <= set(scanned_files(ROOT))  # the scan sees the code
    found = lines_beside_repository(ROOT)
    assert found == [], ("these lines look beside the repository, which a user's clone does not have; "
                         "read the repository's data/ folder instead (env.data.data_dir):\n" + "\n".join(found))


@pytest.mark.parametrize("line", [
    'DATA = ROOT.parent / "' + 'shared" / "data"',
    "DATA = Path(__file__).resolve().parents[4] / '" + "shared'",
    "trace.path=.." + "/shared/data/traces/azure2023_conv.csv",
    'os.environ.get("DISAGGPILOT_' + 'SHARED")',
])
def test_the_beside_repository_check_catches_each_form(tmp_path: Path, line: str) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "planted.py").write_text(f"ok = 1\n{line}\n")
    (tmp_path / "env" / "planted.md").write_text(f"{line}\n")  # prose is not a code path
    assert lines_beside_repository(tmp_path) == [f"env/planted.py:2: {line}"]


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


def test_every_root_a_test_computes_is_the_repository() -> None:
    """``ROOT = Path(__file__).resolve().parents[N]`` in tests and code: N must reach the repository's root
    (a file moved one folder up or down keeps a stale N; a subprocess started there then runs outside it)."""
    pattern = re.compile(r"^\w+ = Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\]\s*$", re.M)
    checked, wrong = 0, []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for depth in pattern.findall(path.read_text()):
            checked += 1
            if path.resolve().parents[int(depth)] != ROOT:
                wrong.append(f"{path.relative_to(ROOT)}: parents[{depth}]")
    assert checked > 10, "the pattern found no roots: it no longer matches how tests compute them"
    assert not wrong, f"these point outside the repository's root: {wrong}"
