"""Ports for replicas: free now, outside the kernel's ephemeral range, never the same twice (env/live/ports.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from disaggpilot.env.live import ports
from disaggpilot.env.live.ports import DEFAULT_EPHEMERAL_FLOOR, LOWEST_PORT, ephemeral_floor, free_port


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= port < ephemeral_floor() for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", ports[-1]))  # nothing took it in between


def test_a_port_someone_listens_on_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pool of 300 ports with 250 held by listeners (as started replicas hold theirs), every port handed out
    is one of the free 50."""
    monkeypatch.setattr(ports, "ephemeral_floor", lambda: LOWEST_PORT + 300)
    listeners = []
    try:
        for port in range(LOWEST_PORT, LOWEST_PORT + 300):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind(("127.0.0.1", port))
            except OSError:
                listener.close()  # held by something else already
                continue
            listener.listen()
            listeners.append(listener)
            if len(listeners) == 250:
                break
        held = {listener.getsockname()[1] for listener in listeners}
        handed = [free_port() for _ in range(20)]
        assert not held & set(handed) and all(LOWEST_PORT <= port < LOWEST_PORT + 300 for port in handed)
    finally:
        for listener in listeners:
            listener.close()


def test_the_ephemeral_floor_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    assert ephemeral_floor(range_file) == 40000
    range_file.write_text("garbage\n")
    assert ephemeral_floor(range_file) == DEFAULT_EPHEMERAL_FLOOR
    assert ephemeral_floor(tmp_path / "missing") == DEFAULT_EPHEMERAL_FLOOR
