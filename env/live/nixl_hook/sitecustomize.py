"""Start-up hook of vLLM replicas started by ``env.live.launcher``: sets NIXL's progress-thread poll timeout.

NIXL's Python agent (nixl 1.5.1, ``nixl_agent.__init__``) sets the agent config's ``pthrDelay`` to 0 whatever its
caller asks, and vLLM's NIXL connector exposes no way round it. The UCX backend's progress thread waits in
``poll()`` for at most that delay (rounded up to whole milliseconds), so at 0 it never waits: one core per
prefill or decode replica, at rest (measured: 1.0 CPU-second per second for an idle agent, 0.02 with 1 ms).
The thread still wakes at once on the UCX workers' events; the delay only bounds how long it sleeps without one.

The launcher puts this folder first on the replica's ``PYTHONPATH`` with
``DISAGGPILOT_NIXL_PROGRESS_DELAY_US`` set; Python imports ``sitecustomize`` at start-up, in the API server and
in every engine and worker process it spawns. The hook waits for NIXL's own ``_api`` module to load, then wraps
the agent constructor so that the config it receives carries the delay. It runs in vLLM's environment, which does
not hold this project, so it uses the standard library only. A ``sitecustomize`` found later on ``sys.path`` is
still run, after this one.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

DELAY_VARIABLE = "DISAGGPILOT_NIXL_PROGRESS_DELAY_US"
NIXL_API_MODULES = frozenset({"nixl_cu12._api", "nixl_cu13._api", "nixl_rocm._api"})
"""Where NIXL's agent lives: ``nixl/__init__.py`` loads one build's ``_api`` and aliases it as ``nixl._api``."""


class _BindingWithDelay:
    """NIXL's compiled binding, except that agents are built with the progress-thread delay."""

    def __init__(self, binding: Any, delay_us: int) -> None:
        self._binding, self._delay_us = binding, delay_us

    def __getattr__(self, name: str) -> Any:
        return getattr(self._binding, name)

    def nixlAgent(self, name: str, config: Any) -> Any:  # noqa: N802 (the binding's own name)
        config.pthrDelay = self._delay_us
        return self._binding.nixlAgent(name, config)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, delay_us: int) -> None:
        self.inner, self.delay_us = inner, delay_us

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        namespace = module.__dict__
        namespace["nixlBind"] = _BindingWithDelay(namespace["nixlBind"], self.delay_us)
        print(f"disaggpilot: NIXL progress-thread delay {self.delay_us} us ({module.__name__})", file=sys.stderr)


class _NixlFinder(importlib.abc.MetaPathFinder):
    def __init__(self, delay_us: int) -> None:
        self.delay_us = delay_us

    def find_spec(self, fullname: str, path: Any,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in NIXL_API_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self.delay_us)
        return spec


def _delay_us() -> int | None:
    text = os.environ.get(DELAY_VARIABLE, "")
    if not text:
        return None
    if not text.isdigit():
        print(f"disaggpilot: {DELAY_VARIABLE}={text!r} is not a whole number of microseconds; "
              "NIXL keeps its own delay", file=sys.stderr)
        return None
    return int(text)


def _run_next_sitecustomize() -> None:
    """Run the ``sitecustomize`` this one shadows, if the interpreter has one further down ``sys.path``."""
    here = os.path.dirname(os.path.abspath(__file__))
    later = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", later)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def install() -> None:
    delay_us = _delay_us()
    if delay_us is not None:
        sys.meta_path.insert(0, _NixlFinder(delay_us))


install()
_run_next_sitecustomize()
