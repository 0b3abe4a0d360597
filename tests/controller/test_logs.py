"""The controller's logs: one human line per decision on a terminal, JSON lines for log shipping."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir

from disaggpilot.controller.config import DEFAULT_METRICS_PORT, ControllerConfig, register_configs
from disaggpilot.controller.logs import FIELDS, HumanFormatter, JsonFormatter, decision_line, use_logs
from disaggpilot.env.catalog import configs_dir

ROOT = Path(__file__).resolve().parents[2]

DECISION: dict[str, Any] = {
    "event": "decision", "decision": 7, "time_s": 210.0, "mode": "shadow", "source": "policy", "decider": "ppo",
    "reason": None, "shield_reasons": [], "applied": False, "actuator_error": None,
    "inputs": {"tenants": {"code": {"attainment": 0.97}, "conv": {"attainment": 0.994}},
               "pools": {"prefill": {"ready": 4, "starting": 0}, "decode": {"ready": 2, "starting": 0}}},
    "shielded_action": {"prefill": {"replicas": 5}, "decode": {"replicas": 2}},
}


def test_a_decision_reads_as_one_line() -> None:
    assert decision_line(DECISION) == ("decision 7  prefill 4→5 decode 2  policy ppo  (fallback: none)  "
                                       "attainment code 0.97 conv 0.99  shadow")


def test_a_fallback_decision_says_why_and_what_the_shield_changed() -> None:
    fallback = {**DECISION, "source": "fallback", "decider": "headroom_planner", "reason": "stale",
                "shield_reasons": ["max_step", "hysteresis"], "applied": True, "mode": "active",
                "inputs": {**DECISION["inputs"], "tenants": {"code": {"attainment": None}}}}
    assert decision_line(fallback) == ("decision 7  prefill 4→5 decode 2  fallback headroom_planner  "
                                       "(fallback: stale)  shield: max_step,hysteresis  attainment code -  applied")
    held = {**DECISION, "source": "hold", "decider": None, "shielded_action": None}
    assert decision_line(held).startswith("decision 7  hold prefill 4 decode 2  hold  (fallback: none)")


def record(message: str, fields: dict[str, Any]) -> logging.LogRecord:
    made = logging.LogRecord("disaggpilot.controller", logging.INFO, __file__, 1, message, (), None)
    setattr(made, FIELDS, fields)
    return made


def test_the_human_formatter_starts_with_the_time_and_keeps_other_messages_short() -> None:
    line = HumanFormatter().format(record("decision", DECISION))
    assert line[2] == ":" and line[5] == ":" and line[9:] == decision_line(DECISION)
    config = HumanFormatter().format(record("resolved config", {"event": "config", "config": {"a": 1}}))
    assert config.endswith(" resolved config")  # the nested config stays in the JSON log file


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("log_format", "terminal", "human"), [
    ("auto", True, True), ("auto", False, False), ("human", False, True), ("json", True, False)])
def test_the_format_follows_the_setting_and_the_terminal(log_format: str, terminal: bool, human: bool,
                                                         tmp_path: Any) -> None:
    stream = Terminal() if terminal else io.StringIO()
    logger = logging.getLogger(f"test_logs.{log_format}.{terminal}")
    console, file = logging.StreamHandler(stream), logging.FileHandler(tmp_path / "run.log")
    logger.addHandler(console)
    logger.addHandler(file)
    try:
        use_logs(log_format, logger)
        assert isinstance(console.formatter, HumanFormatter if human else JsonFormatter)
        assert isinstance(file.formatter, JsonFormatter)  # the log file is for shipping, always JSON
        logger.handle(record("decision", DECISION))
        first = stream.getvalue().splitlines()[0]
        assert (first.endswith(decision_line(DECISION)) if human else json.loads(first)["decision"] == 7)
    finally:
        file.close()


def deployed_metrics_port() -> int:
    """The controller container's ``metrics`` port in ``deploy/controller/deployment.yaml``."""
    manifest = yaml.safe_load((ROOT / "deploy" / "controller" / "deployment.yaml").read_text())
    ports = [port for container in manifest["spec"]["template"]["spec"]["containers"]
             for port in container.get("ports", []) if port["name"] == "metrics"]
    return int(ports[0]["containerPort"])


def test_the_daemon_serves_metrics_by_default_on_the_deployed_port() -> None:
    assert ControllerConfig().metrics_port == DEFAULT_METRICS_PORT == deployed_metrics_port()
    register_configs()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        composed = compose(config_name="controller")
    assert composed.controller.metrics_port == DEFAULT_METRICS_PORT  # the daemon's config, not only the dataclass
    assert composed.controller.log_format == ControllerConfig().log_format == "auto"
