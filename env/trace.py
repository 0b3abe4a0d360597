"""Request traces and length tables read from CSV files: path resolution, strict parsing, caching.

Two trace formats are read directly:

- **native**: ``timestamp_s,tenant,input_tokens,output_tokens`` (seconds, any origin; one file may hold
  several tenants), optionally with a ``hash_ids`` column of prompt KV-block ids for prefix caching.
- **azure**: ``TIMESTAMP,ContextTokens,GeneratedTokens``, the Azure LLM inference traces (TIMESTAMP is a
  wall-clock string such as ``2023-11-16 18:17:03.9799600``).

Length tables (for empirical length distributions) are CSVs with one of the column pairs in
``LENGTH_COLUMNS``. Every parse error names the file, the 1-based line (the header is line 1) and the
column. Parsed files are cached per (path, modification time, size), because RL resets reload them.
"""

from __future__ import annotations

import csv
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from disaggpilot.env.data import DATA_FOLDER, repo_root
from disaggpilot.env.errors import TraceError

NATIVE_COLUMNS: tuple[str, ...] = ("timestamp_s", "tenant", "input_tokens", "output_tokens")
"""Columns of the project's own trace format."""
HASH_IDS_COLUMN = "hash_ids"
"""Optional native column: the prompt's KV-block ids, separated by spaces (commas and brackets are accepted,
so a Mooncake ``[0, 1, 2]`` list pasted in quotes reads too); an empty cell shares nothing."""
AZURE_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
"""Columns of the Azure LLM inference traces (2023)."""
LENGTH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("input_tokens", "output_tokens"),
    ("ContextTokens", "GeneratedTokens"),
    ("num_prefill_tokens", "num_decode_tokens"),
)
"""(prompt, output) column pairs accepted in a length table, in order of preference."""
TRACE_FORMATS: tuple[str, ...] = ("auto", "native", "azure")
"""Values of ``TraceSpec.format``."""
_CACHE_SIZE = 32
_ID_SEPARATORS = str.maketrans(",;[]", "    ")


LEGACY_PREFIX = ("shared", "data")
"""Where the data lived before it moved into the repository; such paths map onto ``data/``."""


def data_path_candidates(path: str) -> list[Path]:
    """The places ``resolve_data_path`` looks for ``path``, in order: as is if absolute, else the current
    directory, then the repository root. ``shared/data/...`` is read as ``data/...`` so older commands work."""
    raw = Path(os.path.expandvars(os.path.expanduser(path)))
    if raw.is_absolute():
        return [raw]
    if raw.parts[:2] == LEGACY_PREFIX and len(raw.parts) > 2:
        raw = Path(DATA_FOLDER, *raw.parts[2:])
    return list(dict.fromkeys([Path.cwd() / raw, repo_root() / raw]))  # once each when run from the root


def resolve_data_path(path: str) -> Path:
    """Find a data file: absolute as is; else relative to the current directory, then the repository root.

    The repository's own data is under ``data/`` (``data/traces/azure2023_conv.csv``); see
    ``data/README.md``. Nothing outside the repository is consulted unless ``path`` points there.

    Raises:
        TraceError: nothing exists at any candidate; the message lists the places looked in and the fix.
    """
    if not str(path).strip():
        raise TraceError("data path is empty: set it to a CSV file (absolute, or relative to the repo)")
    candidates = data_path_candidates(str(path))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise TraceError(f"data file {path!r} not found; looked in: {looked}. Give an absolute path or one "
                     f"relative to the current directory or the repository root; the repository's own "
                     f"files are listed in {DATA_FOLDER}/README.md (restore a deleted one with "
                     f"`git checkout -- {DATA_FOLDER}/`)")


@dataclass(frozen=True, eq=False)
class Trace:
    """A parsed trace; arrays are read-only (they are shared through the cache).

    Attributes:
        path: the file it was read from.
        format: ``native`` or ``azure``.
        timestamp_s: arrival times (seconds since the file's first request), non-decreasing, float64.
        input_tokens: prompt length per request (tokens, >= 1), int64.
        output_tokens: output length per request (tokens, >= 1), int64.
        tenant: tenant label per request (native format), or ``None`` (Azure format).
        hash_ids: per request, the ids of its prompt's KV blocks from the optional ``hash_ids`` column
            (native format), or ``None`` without that column. Equal ids mean an equal prefix up to that
            block, as in Mooncake's traces (kvcache-ai/Mooncake ``mooncake_trace.jsonl``).
    """

    path: Path
    format: str
    timestamp_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    tenant: np.ndarray | None
    hash_ids: tuple[tuple[int, ...], ...] | None = None

    def __len__(self) -> int:
        return int(self.timestamp_s.shape[0])

    def replay(self, *, tenant: str | None, start_s: float, end_s: float, rate_multiplier: float,
               duration_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Requests of the window ``[start_s, end_s)`` (trace seconds), as episode arrivals.

        Args:
            tenant: keep rows with this ``tenant`` label (native format); ``None`` keeps all rows.
            start_s: window start (seconds since the file's first request).
            end_s: window end (seconds since the file's first request; ``inf`` for the whole file).
            rate_multiplier: divide times by this (2 doubles the arrival rate).
            duration_s: episode length; arrivals at or after it are dropped (seconds).

        Returns:
            ``(arrival_s, input_tokens, output_tokens)``: float64 seconds from episode start, int64 tokens.
        """
        rows = self.window_rows(tenant=tenant, start_s=start_s, end_s=end_s, rate_multiplier=rate_multiplier,
                                duration_s=duration_s)
        if start_s > 0 and start_s >= self.timestamp_s[-1]:
            warnings.warn(f"{self.path}: window start {start_s} s is past the last request "
                          f"({self.timestamp_s[-1]:.1f} s): the replay is empty", stacklevel=2)
        return (self.timestamp_s[rows] - start_s) / rate_multiplier, self.input_tokens[rows], self.output_tokens[rows]

    def window_rows(self, *, tenant: str | None, start_s: float, end_s: float, rate_multiplier: float,
                    duration_s: float) -> np.ndarray:
        """Indices of the rows :meth:`replay` keeps for these arguments (same meaning), in file order."""
        keep = (self.timestamp_s >= start_s) & (self.timestamp_s < end_s)
        if tenant is not None and self.tenant is not None:
            keep &= self._tenant_rows(tenant)
        keep &= (self.timestamp_s - start_s) / rate_multiplier < duration_s
        return np.flatnonzero(keep)

    def _tenant_rows(self, tenant: str) -> np.ndarray:
        assert self.tenant is not None
        rows = self.tenant == tenant
        if not rows.any():
            labels = sorted(set(self.tenant.tolist()))[:10]
            raise TraceError(f"{self.path}: no rows with tenant == {tenant!r}; labels in the file include "
                             f"{labels}: set trace.tenant_column_value to one of them")
        return rows


def load_trace(path: str | Path, format: str = "auto") -> Trace:
    """Read a trace (cached per path, modification time and size).

    Args:
        path: the CSV, resolved with :func:`resolve_data_path`.
        format: ``native``, ``azure`` or ``auto`` (decided from the header).

    Raises:
        TraceError: the file is missing, empty, unsorted, or holds a malformed value.
    """
    if format not in TRACE_FORMATS:
        raise TraceError(f"trace format {format!r} is unknown: use one of {list(TRACE_FORMATS)}")
    resolved = resolve_data_path(str(path))
    stat = resolved.stat()
    return _load_trace_cached(resolved, stat.st_mtime_ns, stat.st_size, format)


def load_length_table(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read joint (prompt, output) lengths (tokens, int64, read-only) from a CSV; cached like traces.

    The file needs one of the column pairs in ``LENGTH_COLUMNS``; other columns are ignored.
    """
    resolved = resolve_data_path(str(path))
    stat = resolved.stat()
    return _load_lengths_cached(resolved, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_trace_cached(path: Path, mtime_ns: int, size: int, format: str) -> Trace:
    table = _Table.read(path)
    chosen = _trace_format(table, format)
    prompt_col, output_col = ("input_tokens", "output_tokens") if chosen == "native" else AZURE_COLUMNS[1:]
    times = table.float_column("timestamp_s") if chosen == "native" else table.azure_time_column("TIMESTAMP")
    table.check_sorted(times, "timestamp_s" if chosen == "native" else "TIMESTAMP")
    tenant = table.column("tenant") if chosen == "native" else None
    return Trace(path=path, format=chosen, timestamp_s=_frozen(times - times[0]),
                 input_tokens=_frozen(table.token_column(prompt_col)),
                 output_tokens=_frozen(table.token_column(output_col)),
                 tenant=None if tenant is None else _frozen(np.char.strip(tenant)),
                 hash_ids=table.hash_ids_column(HASH_IDS_COLUMN) if HASH_IDS_COLUMN in table.header else None)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_lengths_cached(path: Path, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    table = _Table.read(path)
    for prompt_col, output_col in LENGTH_COLUMNS:
        if prompt_col in table.header and output_col in table.header:
            return _frozen(table.token_column(prompt_col)), _frozen(table.token_column(output_col))
    raise TraceError(f"{path} line 1: no length columns in header {list(table.header)}; "
                     f"expected one of the pairs {[','.join(pair) for pair in LENGTH_COLUMNS]}")


def _trace_format(table: _Table, format: str) -> str:
    """The format named, or guessed from the header; its columns must all be present."""
    chosen = format
    if format == "auto":
        chosen = "azure" if "TIMESTAMP" in table.header else "native"
        if "TIMESTAMP" not in table.header and "timestamp_s" not in table.header:
            raise TraceError(f"{table.path} line 1: header {list(table.header)} matches neither the native "
                             f"format ({','.join(NATIVE_COLUMNS)}) nor Azure's ({','.join(AZURE_COLUMNS)})")
    needed = NATIVE_COLUMNS if chosen == "native" else AZURE_COLUMNS
    for name in needed:
        if name not in table.header:
            raise TraceError(f"{table.path} line 1, column {name}: missing; the {chosen} format needs "
                             f"columns {','.join(needed)}, the header has {','.join(table.header)}")
    return chosen


def _frozen(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


class _Table:
    """The cells of a CSV file with the line number of each row, and typed column parsers."""

    def __init__(self, path: Path, header: tuple[str, ...], rows: list[list[str]], lines: list[int]) -> None:
        self.path, self.header, self.rows, self.lines = path, header, rows, lines

    @classmethod
    def read(cls, path: Path) -> _Table:
        """Read ``path``; blank lines are skipped; every row must have as many fields as the header."""
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                numbered = [(reader.line_num, row) for row in reader if row]
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise TraceError(f"{path}: cannot read the CSV ({error})") from error
        if not header:
            raise TraceError(f"{path}: empty file; expected a header line such as {','.join(AZURE_COLUMNS)}")
        if not numbered:
            raise TraceError(f"{path}: no data rows after the header line")
        table = cls(path, tuple(name.strip() for name in header), [row for _, row in numbered],
                    [line for line, _ in numbered])
        table._check_widths()
        return table

    def _check_widths(self) -> None:
        widths = np.fromiter(map(len, self.rows), dtype=np.int64, count=len(self.rows))
        bad = np.flatnonzero(widths != len(self.header))
        if bad.size:
            row = int(bad[0])
            raise TraceError(f"{self.path} line {self.lines[row]}: {widths[row]} fields, the header has "
                             f"{len(self.header)} ({','.join(self.header)})")

    def error(self, row: int, column: str, what: str) -> TraceError:
        """A :class:`TraceError` naming the file, the line of ``row`` and ``column``."""
        return TraceError(f"{self.path} line {self.lines[row]}, column {column}: {what}")

    def column(self, name: str) -> np.ndarray:
        """The raw text of column ``name`` (numpy unicode array)."""
        index = self.header.index(name)
        return np.array([row[index] for row in self.rows])

    def token_column(self, name: str) -> np.ndarray:
        """Column ``name`` as token counts (int64, every value >= 1)."""
        values = self._parse(name, np.int64, "is not an integer")
        bad = np.flatnonzero(values < 1)
        if bad.size:
            raise self.error(int(bad[0]), name, f"{values[bad[0]]} tokens: token counts must be >= 1")
        return values

    def hash_ids_column(self, name: str) -> tuple[tuple[int, ...], ...]:
        """Column ``name`` as one tuple of non-negative integer ids per row."""
        index, rows = self.header.index(name), []
        for row, cells in enumerate(self.rows):
            text = cells[index].translate(_ID_SEPARATORS).split()
            if not all(part.isdigit() for part in text):
                raise self.error(row, name, f"{cells[index]!r} is not a list of non-negative integer block ids")
            rows.append(tuple(int(part) for part in text))
        return tuple(rows)

    def float_column(self, name: str) -> np.ndarray:
        """Column ``name`` as finite float64 values."""
        values = self._parse(name, np.float64, "is not a number")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise self.error(int(bad[0]), name, f"{values[bad[0]]} is not a finite number")
        return values

    def azure_time_column(self, name: str) -> np.ndarray:
        """Column ``name`` of wall-clock strings (``2023-11-16 18:17:03.9799600``) as float64 seconds."""
        stamps = self._parse(name, "datetime64[ns]", "is not a timestamp like 2023-11-16 18:17:03.9799600")
        bad = np.flatnonzero(np.isnat(stamps))
        if bad.size:
            raise self.error(int(bad[0]), name, "NaT is not a timestamp")
        return (stamps - stamps[0]).astype(np.int64) / 1e9

    def check_sorted(self, times: np.ndarray, name: str) -> None:
        """Raise unless ``times`` never decreases (Azure traces are sorted; so must ours be)."""
        bad = np.flatnonzero(np.diff(times) < 0)
        if bad.size:
            row = int(bad[0]) + 1
            raise self.error(row, name, f"time goes backwards ({self.rows[row][self.header.index(name)]!r} "
                                        f"after line {self.lines[row - 1]}); sort the file by {name}")

    def _parse(self, name: str, dtype: Any, what: str) -> np.ndarray:
        text = self.column(name)
        try:
            return text.astype(dtype)
        except (ValueError, OverflowError):
            row = self._first_unparsable(text, dtype)
            raise self.error(row, name, f"{str(text[row])!r} {what}") from None

    @staticmethod
    def _first_unparsable(text: np.ndarray, dtype: Any) -> int:
        for row, cell in enumerate(text):
            try:
                np.array([cell]).astype(dtype)
            except (ValueError, OverflowError):
                return row
        return 0
