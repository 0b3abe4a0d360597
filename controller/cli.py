"""The ``disaggpilot`` command: one subcommand per Hydra app.

It lives in the outermost layer because its subcommands span every package (``controller`` → ``agent``
→ ``env``). Each subcommand hands the rest of the command line to its Hydra app, so Hydra overrides,
``--help`` and ``-m`` (multirun) work as usual.

A bad input ends in one line on stderr naming the key, the bad value and the fix, and exit status 1: the
settings' own validation errors (every package's ``PermanentError``) and Hydra's and OmegaConf's composition
errors (unknown key, wrong type, missing group option, unparsable override) alike. Hydra would print those
over several lines with a traceback, so the command asks Hydra to re-raise them (``HYDRA_FULL_ERROR``) and
formats them itself (``controller.cli_errors``). Set ``HYDRA_FULL_ERROR=1`` yourself to see every traceback.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from disaggpilot.controller.cli_errors import is_user_error, one_line

# subcommand -> (module, attribute, one-line help). Modules are imported only when their command runs,
# so ``disaggpilot simulate`` never pays for importing torch, and the daemon's package never imports the local
# cluster's (``localcluster``, named here by string: the import-linter contracts forbid the import).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "simulate": ("disaggpilot.env.simulate", "main", "run a scenario on the simulator with a fixed configuration"),
    "train": ("disaggpilot.agent.train", "main", "train a PPO policy on the simulator and write a policy bundle"),
    "evaluate": ("disaggpilot.agent.evaluate", "main",
                 "compare policies over scenarios and seeds: CSVs, summary, plots"),
    "controller": ("disaggpilot.controller.app", "main",
                   "run the control loop (shadow or active) with its shield and metrics"),
    "loadgen": ("disaggpilot.localcluster.loadgen_app", "main",
                "replay a scenario against an OpenAI-compatible endpoint, per-tenant table"),
    "rig": ("disaggpilot.localcluster.rig", "main",
            "run a local cluster: emulated (or real CPU) vLLM replicas, gateway, Prometheus"),
}
FULL_ERROR = "HYDRA_FULL_ERROR"
"""Hydra re-raises a job's exception, instead of printing it with a trimmed traceback, when this is set."""


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: disaggpilot <command> [hydra overrides...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "Each command is a Hydra app: `disaggpilot <command> --help` lists its config."]
    return "\n".join(lines)


def unknown_command(command: str) -> str:
    """The error for a command that does not exist, with the nearest command names when there are any."""
    near = difflib.get_close_matches(command, COMMANDS, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"disaggpilot: unknown command {command!r}{hint}\n\n{usage()}"


@contextmanager
def hydra_reraises() -> Iterator[bool]:
    """Make Hydra re-raise a job's errors for the duration; yields whether the user asked for tracebacks."""
    asked = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"
    try:
        yield asked not in (None, "", "0")
    finally:
        if asked is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = asked


def run_app(command: str, app: Callable[[], int | None]) -> int | None:
    """Run a Hydra app; a bad input becomes one line on stderr and exit status 1 (see the module docstring)."""
    with hydra_reraises() as tracebacks_asked:
        try:
            return app()
        except Exception as error:
            if tracebacks_asked or not is_user_error(error):
                raise
            print(f"disaggpilot {command}: {one_line(error)}", file=sys.stderr)
            return 1


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch ``disaggpilot <command> ...`` to the command's Hydra app."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command = args[0]
    if command not in COMMANDS:
        raise SystemExit(unknown_command(command))
    module, attribute, _ = COMMANDS[command]
    app: Callable[[], int | None] = getattr(importlib.import_module(module), attribute)
    sys.argv = [f"disaggpilot {command}", *args[1:]]
    status = run_app(command, app)
    if status:  # argparse apps return an exit status; Hydra apps return None
        raise SystemExit(status)


if __name__ == "__main__":
    main()
