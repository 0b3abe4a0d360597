"""One-line messages for the ``disaggpilot`` command's bad inputs.

Hydra reports composition errors (an unknown key, a value the structured config cannot convert, a group
option that does not exist) over several lines, and OmegaConf appends ``full_key:``/``object_type=`` lines;
the settings' own validation already says ``key=value is invalid: fix`` in one line. Here each becomes one
line that names the key, the bad value and the fix.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from disaggpilot.env.errors import PermanentError

USER_ERRORS: tuple[type[Exception], ...] = (HydraException, OmegaConfBaseException, PermanentError)
"""What a user's input causes (and fixes); anything else is a bug and keeps its traceback."""
MERGING = re.compile(r"Error merging override (?P<key>[^=\s]+)=(?P<value>.*)")


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` comes from the command line or the config, not from the code."""
    return isinstance(error, USER_ERRORS) or (isinstance(error, ValueError) and raised_by_hydra(error))


def raised_by_hydra(error: BaseException) -> bool:
    """Whether Hydra itself raised ``error``: it refuses some command lines with a bare ``ValueError``
    (``-m`` with ``--cfg``, say) before any job or config code runs."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and Path(frame.tb_frame.f_code.co_filename).parts[-3:-1] == ("hydra", "_internal")


def one_line(error: BaseException) -> str:
    """``error`` as one line naming the key, the bad value and the fix."""
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        return missing_option(error.missing_cfg_file, list(error.options))
    cause = error.__cause__
    if isinstance(error, HydraException) and isinstance(cause, OmegaConfBaseException):
        return override_error(str(error), cause)
    if isinstance(error, OmegaConfBaseException):
        return omegaconf_error(error)
    if isinstance(error, OverrideParseException):
        return f"cannot parse the override {error.override!r}: write key=value (quote values with spaces or brackets)"
    return flatten(str(error))


def missing_option(missing: str, options: list[str]) -> str:
    """A config group option that does not exist, with the ones that do."""
    group, _, name = missing.rpartition("/")
    choices = ", ".join(sorted(options))
    return f"{group}={name!r} is not an option of configs/{group}/: use one of {choices}"


def override_error(hydra_message: str, cause: OmegaConfBaseException) -> str:
    """A command-line override that OmegaConf refused (unknown key or a value of the wrong type)."""
    key = str(cause.full_key or cause.key or "")
    if isinstance(cause, ConfigKeyError | ConfigAttributeError):
        return unknown_key(key, cause)
    merging = MERGING.match(hydra_message)
    value = merging.group("value") if merging else repr(cause.value)
    return f"{key}={value} is invalid: {first_line(cause)}"


def unknown_key(key: str, cause: OmegaConfBaseException) -> str:
    """A key the config does not have: the nearest keys it has, or how to add a new one."""
    parent = getattr(cause, "parent_node", None)
    known = [str(name) for name in parent] if isinstance(parent, DictConfig) else []
    near = difflib.get_close_matches(key.rpartition(".")[2], known, n=3, cutoff=0.6)
    prefix = key.rpartition(".")[0]
    if near:
        fix = "did you mean " + " or ".join(f"{prefix}.{name}" if prefix else name for name in near) + "?"
    elif getattr(cause, "object_type", None) is dict:
        fix = f"check its spelling, or add a new key with +{key}=..."
    else:
        fix = "check its spelling (`--cfg job` prints every setting)"
    return f"{key} is not a setting here: {fix}"


def omegaconf_error(error: OmegaConfBaseException) -> str:
    """An OmegaConf error raised while the app read its config (a missing value, a bad interpolation)."""
    key = str(error.full_key or error.key or "")
    return f"{key}: {first_line(error)}" if key else first_line(error)


def first_line(error: BaseException) -> str:
    """OmegaConf's message without its ``full_key``/``object_type`` detail lines."""
    message = getattr(error, "msg", None) or str(error)
    return str(message).splitlines()[0].strip() if str(message).strip() else type(error).__name__


def flatten(message: str) -> str:
    """A possibly multi-line message on one line."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())
