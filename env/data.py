"""Where the repository's data lives: ``data/`` at the repository root.

``data/`` holds the public files the code, tests and benchmarks read (the Azure 2023 traces, Splitwise's
measured iteration times, vLLM's recorded ``/metrics`` scrapes); ``data/README.md`` gives each file's
source and licence. It is part of the repository, so nothing here looks beside the repository.
"""

from __future__ import annotations

from pathlib import Path

import disaggpilot.env
from disaggpilot.env.errors import TraceError

DATA_FOLDER = "data"
"""The data folder's name, relative to the repository root."""


def repo_root() -> Path:
    """The repository root: the directory that holds ``env/`` and ``configs/``."""
    return Path(disaggpilot.env.__file__).resolve().parents[1]


def data_dir() -> Path:
    """The repository's data folder (``<repo root>/data``)."""
    return repo_root() / DATA_FOLDER


def missing_data_message(path: Path) -> str:
    """What to tell a user when ``path``, a file inside :func:`data_dir`, is absent."""
    return (f"data file {path} is missing: it is part of the repository, so restore it with "
            f"`git checkout -- {DATA_FOLDER}/` in {repo_root()} (see {DATA_FOLDER}/README.md)")


def data_file(relative: str) -> Path:
    """The file ``relative`` inside the data folder, e.g. ``data_file("vllm/metrics_aggregated.txt")``.

    Raises:
        TraceError: the file is absent; the message names it and says how to restore it.
    """
    path = data_dir() / relative
    if not path.is_file():
        raise TraceError(missing_data_message(path))
    return path
