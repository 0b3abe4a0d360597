"""Tests of ``env.trace``: path resolution, both trace formats, replay windows, malformed files, caching."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import disaggpilot.env.data
from disaggpilot.env.data import data_dir, data_file, repo_root
from disaggpilot.env.errors import TraceError
from disaggpilot.env.trace import load_length_table, load_trace, resolve_data_path

NATIVE = """timestamp_s,tenant,input_tokens,output_tokens
100.0,a,10,1
101.0,b,20,2
102.5,a,30,3
104.0,a,40,4
"""
AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:04.0319600,3180,8
2023-11-16 18:17:05.9799600,110,27
2023-11-16 18:17:09.9799600,7,100
"""


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replay(path: Path, **window: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    settings = {"start_s": 0.0, "end_s": np.inf, "rate_multiplier": 1.0, "duration_s": np.inf, **window}
    return load_trace(path).replay(tenant=None, **settings)


# ---- formats and replay ----------------------------------------------------------------------------------

def test_native_trace_times_are_relative_to_first_request(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, NATIVE))
    assert trace.format == "native" and len(trace) == 4
    np.testing.assert_allclose(trace.timestamp_s, [0.0, 1.0, 2.5, 4.0])
    assert trace.tenant is not None and trace.tenant.tolist() == ["a", "b", "a", "a"]


def test_native_replay_with_tenant_window_and_rate(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, NATIVE))
    arrival, prompt, output = trace.replay(tenant="a", start_s=1.0, end_s=4.0, rate_multiplier=2.0,
                                           duration_s=100.0)
    np.testing.assert_allclose(arrival, [0.75])
    assert prompt.tolist() == [30] and output.tolist() == [3]


def test_native_replay_of_unknown_tenant_lists_labels(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, NATIVE))
    with pytest.raises(TraceError, match=r"tenant == 'z'.*\['a', 'b'\]"):
        trace.replay(tenant="z", start_s=0.0, end_s=np.inf, rate_multiplier=1.0, duration_s=10.0)


def test_azure_trace_parses_wall_clock(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, AZURE))
    assert trace.format == "azure" and trace.tenant is None
    np.testing.assert_allclose(trace.timestamp_s, [0.0, 0.052, 2.0, 6.0], atol=1e-6)
    assert trace.input_tokens.tolist() == [4808, 3180, 110, 7]


def test_azure_replay_with_rate_multiplier_window_and_duration(tmp_path: Path) -> None:
    path = write(tmp_path, AZURE)
    arrival, prompt, output = replay(path, start_s=0.05, end_s=7.0, rate_multiplier=2.0, duration_s=2.0)
    np.testing.assert_allclose(arrival, [0.001, 0.975], atol=1e-6)
    assert prompt.tolist() == [3180, 110] and output.tolist() == [8, 27]


def test_window_past_the_end_warns_and_is_empty(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="past the last request"):
        arrival, _, _ = replay(write(tmp_path, AZURE), start_s=50.0)
    assert arrival.size == 0


def test_arrays_are_read_only(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, AZURE))
    with pytest.raises(ValueError, match="read-only"):
        trace.input_tokens[0] = 1


# ---- malformed files -------------------------------------------------------------------------------------

MALFORMED = [
    ("bad int", AZURE.replace("3180", "abc"), r"trace\.csv line 3, column ContextTokens: 'abc' is not an integer"),
    ("float tokens", AZURE.replace(",8\n", ",8.5\n"), r"line 3, column GeneratedTokens: '8\.5' is not an integer"),
    ("zero tokens", AZURE.replace(",27", ",0"), r"line 4, column GeneratedTokens: 0 tokens"),
    ("negative tokens", NATIVE.replace(",30,", ",-30,"), r"line 4, column input_tokens: -30 tokens"),
    ("bad time", AZURE.replace("18:17:05", "18:77:05"), r"line 4, column TIMESTAMP: '2023-11-16 18:77:05"),
    ("bad number", NATIVE.replace("102.5", "soon"), r"line 4, column timestamp_s: 'soon' is not a number"),
    ("nan time", NATIVE.replace("102.5", "nan"), r"line 4, column timestamp_s: nan is not a finite"),
    ("unsorted azure", AZURE.replace("18:17:05", "18:17:01"), r"line 4, column TIMESTAMP: time goes backwards"),
    ("unsorted native", NATIVE.replace("104.0", "99.0"), r"line 5, column timestamp_s: time goes backwards"),
    ("missing column", AZURE.replace("GeneratedTokens", "Output"), r"line 1.*(GeneratedTokens|Output)"),
    ("unknown header", "a,b\n1,2\n", r"line 1: header \['a', 'b'\] matches neither"),
    ("short row", AZURE.replace(",4808,10", ",4808"), r"line 2: 2 fields, the header has 3"),
    ("empty", "", r"trace\.csv: empty file"),
    ("header only", "TIMESTAMP,ContextTokens,GeneratedTokens\n", r"no data rows"),
]


@pytest.mark.parametrize(("case", "text", "pattern"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_trace_names_file_line_and_column(tmp_path: Path, case: str, text: str, pattern: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError, match=pattern) as caught:
        load_trace(path)
    assert str(path) in str(caught.value)


def test_explicit_format_requires_its_columns(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"line 1, column timestamp_s: missing; the native format"):
        load_trace(write(tmp_path, AZURE), format="native")


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    text = AZURE.replace("\n2023-11-16 18:17:05", "\n\n2023-11-16 18:17:05").replace(",27", ",x")
    with pytest.raises(TraceError, match=r"line 5, column GeneratedTokens: 'x'"):
        load_trace(write(tmp_path, text))


# ---- length tables ---------------------------------------------------------------------------------------

def test_length_table_accepts_vidur_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens,num_total_tokens\n5,6,11\n7,8,15\n")
    prompt, output = load_length_table(path)
    assert prompt.tolist() == [5, 7] and output.tolist() == [6, 8]


def test_length_table_without_length_columns(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no length columns"):
        load_length_table(write(tmp_path, "x,y\n1,2\n"))


# ---- caching and resolution ------------------------------------------------------------------------------

def test_cache_hits_and_reloads_after_a_change(tmp_path: Path) -> None:
    path = write(tmp_path, AZURE)
    first = load_trace(path)
    assert load_trace(path) is first
    path.write_text(AZURE.replace("4808", "48"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_trace(path).input_tokens[0] == 48


def test_resolve_absolute_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, AZURE)
    assert resolve_data_path(str(path)) == path
    monkeypatch.chdir(tmp_path)
    assert resolve_data_path("trace.csv") == tmp_path / "trace.csv"


def test_resolve_repo_relative() -> None:
    assert resolve_data_path("pyproject.toml") == repo_root() / "pyproject.toml"


def test_resolve_repository_data_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = data_dir() / "traces" / "azure2023_conv.csv"
    assert resolve_data_path("data/traces/azure2023_conv.csv") == expected


def test_legacy_shared_prefix_maps_onto_repository_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A "shared" folder in the current directory holding the same name must not be read: only the repository.
    decoy = tmp_path.joinpath("shared", "data", "traces")
    decoy.mkdir(parents=True)
    write(decoy, AZURE, "azure2023_conv.csv")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_data_path("shared/data/traces/azure2023_conv.csv")
    assert resolved == data_dir() / "traces" / "azure2023_conv.csv"


def test_missing_file_lists_places_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TraceError, match="looked in") as caught:
        resolve_data_path("shared/data/nope.csv")
    message = str(caught.value)
    assert str(repo_root() / "data" / "nope.csv") in message and str(tmp_path / "data" / "nope.csv") in message
    assert "git checkout -- data/" in message and "data/README.md" in message


def test_missing_repository_data_names_file_and_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(disaggpilot.env.data, "repo_root", lambda: tmp_path)
    with pytest.raises(TraceError, match=r"data/vllm/metrics_aggregated\.txt is missing.*git checkout -- data/"):
        data_file("vllm/metrics_aggregated.txt")


# ---- the repository's Azure traces -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "rows"), [("azure2023_code.csv", 8819), ("azure2023_conv.csv", 19366)])
def test_azure_trace_loads_fast(tmp_path: Path, name: str, rows: int) -> None:
    copy = tmp_path / name
    shutil.copy(data_file(f"traces/{name}"), copy)
    started = time.perf_counter()
    trace = load_trace(copy)
    assert time.perf_counter() - started < 1.0
    assert len(trace) == rows and trace.format == "azure"
    assert 3000.0 < trace.timestamp_s[-1] < 3700.0
