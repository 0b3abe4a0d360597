"""The gateway's input bounds on loopback: body size (413), prompt characters and token ids (400), and every
4xx answer counted by reason in its metrics (issue 21, finding 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from disaggpilot.env.errors import ConfigError
from disaggpilot.localcluster.gateway import TenantConfig
from disaggpilot.localcluster.gateway.config import BODY_OVERHEAD_BYTES, JSON_BYTES_PER_CHAR
from disaggpilot.localcluster.gateway.metrics import GW_REFUSED
from tests.localcluster.upstreams import KEYS, MODEL, FakeReplica, call, gateway_config, rig, run

ROOT = Path(__file__).resolve().parents[2]
HUGE_BYTES = 60 * 1024 * 1024
"""The size of body that took the gateway from 87 MB to 769 MB when four were sent at once (bytes)."""
ALLOWED_GROWTH_BYTES = 20 * 1024 * 1024
"""How much the gateway's peak memory may grow while refusing a HUGE_BYTES body: a third of it (bytes)."""


def refused(text: str, tenant: str, reason: str) -> float:
    """The value of ``disaggpilot_gateway_requests_refused_total{tenant, reason}`` in a /metrics text."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == GW_REFUSED and sample.labels == {"tenant": tenant, "reason": reason}:
                return float(sample.value)
    raise AssertionError(f"no {GW_REFUSED}{{tenant={tenant},reason={reason}}}")


def test_body_limit_is_derived_from_the_context_and_validated() -> None:
    config = gateway_config([FakeReplica("agg-0")], max_model_len=1000)
    assert config.max_prompt_chars == 1000 * config.max_chars_per_token
    assert config.body_limit_bytes == config.max_prompt_chars * JSON_BYTES_PER_CHAR + BODY_OVERHEAD_BYTES
    assert gateway_config([FakeReplica("agg-0")], max_body_bytes=5000).body_limit_bytes == 5000
    bad: list[tuple[str, int]] = [("max_body_bytes", -1), ("vocab_size", -5), ("max_chars_per_token", 0)]
    for key, value in bad:
        with pytest.raises(ConfigError, match=f"{key}={value}"):
            gateway_config([FakeReplica("agg-0")], None, **{key: value})


# --- an oversize body: 413 before it is read, measured on a gateway process --------------------------------
def _peak_rss_bytes(pid: int) -> int:
    """The process' peak resident set (VmHWM in /proc/<pid>/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


async def _chunks(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def _post(url: str, data: object) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {KEYS['alpha']}"}
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/completions", data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def test_a_60_mb_body_gets_413_without_the_gateway_growing_by_its_size(tmp_path: Path) -> None:
    config = {"tenants": [{"name": "alpha", "api_key": KEYS["alpha"]}], "model": MODEL, "max_model_len": 256,
              "replicas": [{"name": "agg-0", "role": "aggregated", "url": "http://127.0.0.1:9"}]}
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "disaggpilot.localcluster.gateway", "--config",
                                str(tmp_path / "gateway.yaml"), "--log-level", "WARNING"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        url = (process.stdout.readline() if process.stdout else "").split()[-1]
        huge = json.dumps({"model": MODEL, "prompt": "x" * HUGE_BYTES, "max_tokens": 1}).encode()
        assert run(_post(url, b'{"prompt": "warm up", "max_tokens": 0}'), 10)[0] == 400
        before = _peak_rss_bytes(process.pid)
        declared = run(_post(url, huge), 30)  # with Content-Length: refused on the header
        chunked = run(_post(url, _chunks(huge)), 30)  # no Content-Length: the read stops at the limit
        growth = _peak_rss_bytes(process.pid) - before
        assert (declared[0], chunked[0]) == (413, 413)
        assert "limit" in str(declared[1]) and declared[1]["error"]["param"] == "body"  # type: ignore[index]
        assert growth < ALLOWED_GROWTH_BYTES, f"peak RSS grew {growth / 2**20:.1f} MiB"
    finally:
        process.kill()
        process.wait(timeout=10)


# --- prompts the word count cannot see, and token ids ------------------------------------------------------
def test_a_long_prompt_without_spaces_gets_400_naming_the_limit() -> None:
    async def body() -> None:
        replicas = [FakeReplica("agg-0")]
        async with rig(replicas, max_model_len=64, max_chars_per_token=8) as (gateway, session):
            key, limit = KEYS["alpha"], 64 * 8
            fits = await call(session, gateway.url, key, extra={"prompt": "x" * limit})
            over = await call(session, gateway.url, key, extra={"prompt": "x" * (limit + 1)})
            chat = await call(session, gateway.url, key, chat=True, extra={"messages": [
                {"role": "system", "content": "y" * 300}, {"role": "user", "content": "z" * 300}]})
            assert fits.status == 200 and len(replicas[0].received) == 1
            assert (over.status, chat.status) == (400, 400)
            assert over.json["error"]["param"] == "prompt" and chat.json["error"]["param"] == "messages"
            assert f"limit of {limit}" in over.json["error"]["message"]
            assert "max_chars_per_token" in over.json["error"]["message"]
            assert len(replicas[0].received) == 1
    run(body())


def test_token_ids_must_be_non_negative_and_below_the_vocabulary() -> None:
    async def body() -> None:
        replicas = [FakeReplica("agg-0")]
        async with rig(replicas, vocab_size=100) as (gateway, session):
            key = KEYS["alpha"]
            good = await call(session, gateway.url, key, extra={"prompt": [0, 5, 99]})
            answers = [await call(session, gateway.url, key, extra={"prompt": ids})
                       for ids in ([3, -1], [100], [1, True], [1.5])]
            assert good.status == 200 and replicas[0].received[0]["prompt"] == [0, 5, 99]
            assert [a.status for a in answers] == [400] * 4
            assert [a.json["error"]["param"] for a in answers] == ["prompt[1]", "prompt[0]", "prompt[1]", "prompt[0]"]
            assert "vocabulary size 100" in answers[1].json["error"]["message"]
            assert len(replicas[0].received) == 1
        async with rig([FakeReplica("agg-1")]) as (gateway, session):  # vocabulary unknown: ids need only be >= 0
            negative = await call(session, gateway.url, KEYS["alpha"], extra={"prompt": [7, -3]})
            assert negative.status == 400 and "non-negative" in negative.json["error"]["message"]
    run(body())


# --- every 4xx answer counted, by reason; a bad key under tenant "unknown" ---------------------------------
def test_every_4xx_answer_is_counted_by_reason() -> None:
    async def body() -> None:
        tenants = [TenantConfig(name="alpha", api_key=KEYS["alpha"], max_concurrency=64, token_rate_per_s=1.0,
                                token_burst=40)]
        replicas = [FakeReplica("agg-0")]
        async with rig(replicas, tenants=tenants, max_model_len=64, max_body_bytes=4096, vocab_size=50) as (
                gateway, session):
            url, key = gateway.url, KEYS["alpha"]
            statuses = [
                (await call(session, url, "wrong-key-0123456789")).status,
                (await call(session, url, None)).status,
                (await call(session, url, key, extra={"prompt": "x" * 5000})).status,
                (await call(session, url, key, extra={"prompt": "x" * 2000})).status,
                (await call(session, url, key, words=70)).status,
                (await call(session, url, key, extra={"prompt": [60]})).status,
                (await call(session, url, key, extra={"model": "other"})).status,
                (await call(session, url, key, raw=b"{not json")).status,
                (await call(session, url, key, words=10, max_tokens=20)).status,
                (await call(session, url, key, words=10, max_tokens=20)).status,
            ]
            async with session.get(url + "/v1/models") as models:
                statuses.append(models.status)
            text = await (await session.get(url + "/metrics")).text()
        assert statuses == [401, 401, 413, 400, 400, 400, 404, 400, 200, 429, 401]
        assert refused(text, "unknown", "unauthorized") == 3.0
        assert refused(text, "alpha", "body_too_large") == 1.0
        assert refused(text, "alpha", "prompt_too_long") == 2.0
        assert refused(text, "alpha", "invalid_token_ids") == 1.0
        assert refused(text, "alpha", "unknown_model") == 1.0
        assert refused(text, "alpha", "invalid_request") == 1.0
        assert refused(text, "alpha", "rate_limited") == 1.0
        assert "wrong-key" not in text and KEYS["alpha"] not in text
    run(body())
