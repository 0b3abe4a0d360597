"""Structured logs: one JSON object per line, with the fields a record carries in ``extra={"fields": ...}``.

The loop logs one ``decision`` line per interval (see ``controller.decision.Decision.record``); every other
message (start-up config, fallback transitions, shutdown) is a JSON line too. Hydra's handlers are kept;
only their formatter changes.
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


def use_json_logs(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) the JSON formatter."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(JsonFormatter())
