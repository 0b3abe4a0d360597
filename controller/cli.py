"""The ``disaggpilot`` command: one subcommand per Hydra app.

It lives in the outermost layer because its subcommands span every package (``controller`` → ``agent``
→ ``env``). Each subcommand hands the rest of the command line to its Hydra app, so Hydra overrides,
``--help`` and ``-m`` (multirun) work as usual.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, attribute, one-line help). Modules are imported only when their command runs,
# so ``disaggpilot simulate`` never pays for importing torch.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "simulate": ("env.simulate", "main", "run a scenario on the simulator with a fixed configuration"),
    "train": ("agent.train", "main", "train a PPO policy on the simulator and write a policy bundle"),
    "evaluate": ("agent.evaluate", "main", "compare policies over scenarios and seeds: CSVs, summary, plots"),
    "controller": ("controller.app", "main", "run the control loop (shadow or active) with its shield and metrics"),
    "loadgen": ("env.loadgen_app", "main", "replay a scenario against an OpenAI-compatible endpoint, per-tenant table"),
    "rig": ("env.live.rig", "main", "run a local cluster: emulated (or real CPU) vLLM replicas, gateway, Prometheus"),
}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: disaggpilot <command> [hydra overrides...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "Each command is a Hydra app: `disaggpilot <command> --help` lists its config."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch ``disaggpilot <command> ...`` to the command's Hydra app."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command = args[0]
    if command not in COMMANDS:
        raise SystemExit(f"disaggpilot: unknown command {command!r}\n\n{usage()}")
    module, attribute, _ = COMMANDS[command]
    app: Callable[[], int | None] = getattr(importlib.import_module(module), attribute)
    sys.argv = [f"disaggpilot {command}", *args[1:]]
    status = app()
    if status:  # argparse apps return an exit status; Hydra apps return None
        raise SystemExit(status)


if __name__ == "__main__":
    main()
