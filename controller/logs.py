"""The controller's logs: JSON lines for log shipping, one short line per decision for a person.

The loop logs one ``decision`` record per interval (see ``controller.decision.Decision.record``) with its
fields in ``extra={"fields": ...}``; every other message (start-up config, fallback transitions, shutdown)
carries fields too. :class:`JsonFormatter` writes a record as one JSON object per line; :class:`HumanFormatter`
as one line a person reads at a glance (``12:00:30 decision 7  prefill 4→5 decode 2  policy ppo ...``).
``controller.log_format`` picks: ``json``, ``human``, or ``auto`` (human on a terminal, JSON elsewhere and
always in the log file). Hydra's handlers are kept; only their formatters change.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

FIELDS = "fields"
"""Key of ``extra`` whose mapping is merged into the JSON object."""


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"time", "level", "logger", "message", **fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (non-finite numbers become null)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(_jsonable(line), separators=(",", ":"), default=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


class HumanFormatter(logging.Formatter):
    """Formats a decision as one line of what changed and why, any other record as its time and message."""

    def format(self, record: logging.LogRecord) -> str:
        """``HH:MM:SS`` and the decision's summary, or the level (when not INFO) and the message."""
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict) and fields.get("event") == "decision":
            return f"{clock} {decision_line(fields)}"
        level = "" if record.levelno == logging.INFO else f"{record.levelname} "
        scalars = "".join(f"  {key} {value}" for key, value in (fields or {}).items()
                          if key != "event" and isinstance(value, str | int | float) and value != "")
        return f"{clock} {level}{record.getMessage()}{scalars}"


def decision_line(fields: dict[str, Any]) -> str:
    """One decision record as ``decision 7  prefill 4→5 decode 2  policy ppo  (fallback: none)  attainment ...``."""
    inputs = fields.get("inputs") or {}
    parts = [f"decision {fields.get('decision')}", replicas_change(inputs.get("pools") or {},
                                                                     fields.get("shielded_action"))]
    parts.append(f"{fields.get('source')} {fields.get('decider') or ''}".rstrip())
    parts.append(f"(fallback: {fields.get('reason') or 'none'})")
    if fields.get("shield_reasons"):
        parts.append("shield: " + ",".join(fields["shield_reasons"]))
    attainment = " ".join(f"{name} {_fraction(tenant.get('attainment'))}"
                          for name, tenant in (inputs.get("tenants") or {}).items())
    if attainment:
        parts.append(f"attainment {attainment}")
    parts.append("applied" if fields.get("applied") else str(fields.get("mode")))
    if fields.get("actuator_error"):
        parts.append(f"actuator error: {fields['actuator_error']}")
    return "  ".join(part for part in parts if part)


def replicas_change(pools: dict[str, Any], action: dict[str, Any] | None) -> str:
    """``prefill 4→5 decode 2``: each pool's replicas (ready and starting) and the decided target."""
    if not action:
        return "hold " + " ".join(f"{role} {_replicas(pool)}" for role, pool in pools.items())
    changes = []
    for role, target in action.items():
        now, wanted = _replicas(pools.get(role) or {}), target.get("replicas")
        changes.append(f"{role} {wanted}" if now == wanted else f"{role} {now}→{wanted}")
    return " ".join(changes)


def _replicas(pool: dict[str, Any]) -> int | str:
    ready, starting = pool.get("ready"), pool.get("starting")
    return "?" if ready is None else int(ready) + int(starting or 0)


def _fraction(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float | int) and math.isfinite(value) else "-"


def use_json_logs(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) the JSON formatter."""
    use_logs("json", logger)


def use_logs(log_format: str, logger: logging.Logger | None = None) -> None:
    """Set the formatter of every handler of ``logger`` (default: the root logger).

    Args:
        log_format: ``json`` everywhere; ``human`` on console handlers (JSON in files); ``auto``: human on
            console handlers whose stream is a terminal, JSON elsewhere.
        logger: whose handlers; the root logger by default.
    """
    target = logger or logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(HumanFormatter() if _is_for_a_person(handler, log_format) else JsonFormatter())


def _is_for_a_person(handler: logging.Handler, log_format: str) -> bool:
    console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    if not console or log_format == "json":
        return False
    stream = getattr(handler, "stream", None)
    return log_format == "human" or bool(getattr(stream, "isatty", lambda: False)())
