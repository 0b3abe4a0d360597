"""One error hierarchy for the three packages: every error is a ``DisaggpilotError`` and exactly one of
``PermanentError`` (fix the input) or ``TemporaryError`` (retry), so a caller catches a family once, whichever
package raised it; and one ``require``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

from disaggpilot.agent import errors as agent_errors
from disaggpilot.agent.ray_cluster import RayWorkerError
from disaggpilot.controller import errors as controller_errors
from disaggpilot.controller.cli_errors import is_user_error
from disaggpilot.controller.loop import TEMPORARY
from disaggpilot.env import errors as env_errors
from disaggpilot.env.errors import DisaggpilotError, PermanentError, TemporaryError
from disaggpilot.env.live.errors import LiveError, PrometheusUnavailableError

PACKAGES = ("disaggpilot.env", "disaggpilot.agent", "disaggpilot.controller", "disaggpilot.localcluster")
FAMILIES = (PermanentError, TemporaryError)
BASES: frozenset[type] = frozenset({DisaggpilotError, *FAMILIES, env_errors.EnvError, agent_errors.AgentError,
                                    controller_errors.ControllerError, LiveError})
"""The root, the two families and the bases of a package's (or sub-package's) errors: never raised themselves."""
SHARED: frozenset[type] = frozenset({DisaggpilotError, *FAMILIES, env_errors.ConfigError})
"""Defined in ``env.errors`` for every package, so they belong to none."""
PACKAGE_BASE: dict[str, type] = {"disaggpilot.env": env_errors.EnvError, "disaggpilot.agent": agent_errors.AgentError,
                                 "disaggpilot.controller": controller_errors.ControllerError,
                                 "disaggpilot.localcluster": env_errors.EnvError}  # the local cluster raises env errors


def all_modules() -> list[ModuleType]:
    """Every module of the packages (``__main__`` modules aside: importing one runs it)."""
    modules = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules.append(package)
        modules += [importlib.import_module(info.name)
                    for info in pkgutil.walk_packages(package.__path__, f"{name}.")
                    if info.name.rpartition(".")[2] != "__main__"]
    return modules


@pytest.fixture(scope="module")
def modules() -> list[ModuleType]:
    return all_modules()


@pytest.fixture(scope="module")
def error_classes(modules: list[ModuleType]) -> list[type[Exception]]:
    """Every exception class defined (not imported) in a module of the packages; warnings aside."""
    found = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
             if cls.__module__ == module.__name__ and issubclass(cls, Exception) and not issubclass(cls, Warning)}
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_walk_finds_every_package_s_errors(error_classes: list[type[Exception]]) -> None:
    names = {name(cls) for cls in error_classes}
    assert {f"disaggpilot.{error}" for error in (
        "env.errors.TraceError", "env.live.errors.PrometheusUnavailableError", "agent.errors.BundleError",
        "agent.ray_cluster.RayWorkerError", "controller.errors.ActuatorError",
        "localcluster.prometheus_server.PrometheusServerError")} <= names


def test_every_error_has_the_one_root_and_exactly_one_family(error_classes: list[type[Exception]]) -> None:
    wrong = [f"{name(cls)}: root={issubclass(cls, DisaggpilotError)}, "
             f"families={[family.__name__ for family in FAMILIES if issubclass(cls, family)]}"
             for cls in error_classes if cls not in BASES
             and not (issubclass(cls, DisaggpilotError) and sum(issubclass(cls, f) for f in FAMILIES) == 1)]
    assert wrong == [], "subclass the package's base and PermanentError or TemporaryError:\n" + "\n".join(wrong)


def test_bases_are_in_no_family(error_classes: list[type[Exception]]) -> None:
    """``except PermanentError`` must not catch a bare package base, which says nothing about retrying."""
    assert set(error_classes) >= BASES
    assert all(issubclass(base, DisaggpilotError) for base in BASES)
    assert [base for base in BASES - set(FAMILIES) if issubclass(base, FAMILIES)] == []


def test_every_error_subclasses_its_package_s_base(error_classes: list[type[Exception]]) -> None:
    wrong = [name(cls) for cls in error_classes
             if cls not in SHARED and not issubclass(cls, PACKAGE_BASE[".".join(cls.__module__.split(".")[:2])])]
    assert wrong == []


def test_the_packages_re_export_the_shared_classes() -> None:
    for module in (agent_errors, controller_errors):
        assert (module.PermanentError, module.TemporaryError, module.ConfigError) == (
            PermanentError, TemporaryError, env_errors.ConfigError)
    error = controller_errors.TemporaryError("scrape timed out", delay_s=2.5)
    assert isinstance(error, env_errors.TemporaryError) and error.delay_s == 2.5


def test_require_is_defined_once(modules: list[ModuleType]) -> None:
    others = [module.__name__ for module in modules
              if getattr(module, "require", env_errors.require) is not env_errors.require]
    assert others == []
    with pytest.raises(controller_errors.ConfigError, match=r"controller\.interval_s=0 is invalid: use > 0"):
        env_errors.require(False, "controller.interval_s", 0, "use > 0")


@pytest.mark.parametrize("error", [
    agent_errors.BundleError("bad bundle"), controller_errors.ActuatorError("forbidden"),
    env_errors.TraceError("bad trace"), env_errors.ConfigError("bad key"),
], ids=lambda error: type(error).__name__)
def test_a_permanent_error_of_any_package_is_a_user_error_and_not_retried(error: Exception) -> None:
    assert is_user_error(error) and not isinstance(error, TEMPORARY)


@pytest.mark.parametrize("cls", [RayWorkerError, controller_errors.TemporaryError, PrometheusUnavailableError],
                         ids=name)
def test_a_temporary_error_of_any_package_is_retried(cls: type[TemporaryError]) -> None:
    error = cls("try again", 1.0)
    assert isinstance(error, TEMPORARY) and not is_user_error(error)
