"""Settings dataclasses built by OmegaConf: typed from a mapping or a composed config, nested parts included.

Kept apart from ``env.config_store`` (which imports the settings of the simulator and of the live backend) so that
any settings module may use it without joining the two backends' imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import typing
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from disaggpilot.env.errors import ConfigError

SchemaT = TypeVar("SchemaT")


def defaults_node(schema: type) -> DictConfig:
    """``schema``'s defaults as an untyped config: its keys exist (``env.interval_s=60`` overrides, a misspelt
    key is refused) and its defaults come from the dataclass alone, but values are checked by the dataclass's
    own validation, whose messages name the fix (``env.interval_s='abc' is invalid: use a number``), not by
    OmegaConf. For schemas whose type errors the command line's messages pin (``env``, ``run``, ``simulate``).
    A field without a default (a required one, set elsewhere in the config) is left out."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(schema):
        if item.default is not dataclasses.MISSING:
            values[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            value = item.default_factory()
            is_settings = dataclasses.is_dataclass(value) and not isinstance(value, type)
            values[item.name] = dataclasses.asdict(value) if is_settings else value
    return OmegaConf.create(values)


def build(schema: type[SchemaT], values: Any, key: str = "") -> SchemaT:
    """``schema`` (a settings dataclass) built by OmegaConf from a mapping or a config node: nested dataclasses
    included, each validated by its ``__post_init__``. A value OmegaConf cannot convert, or a required one left
    unset (``???``), is explained by the
    dataclass that holds it, in its own words (``run.seed=1.5 is invalid: use a non-negative integer``); an
    unknown key raises :class:`ConfigError` naming it under ``key`` (the config key of ``values``)."""
    if isinstance(values, DictConfig) and OmegaConf.get_type(values) is schema:
        built = OmegaConf.to_object(values)  # composed against the schema already: typed, and frozen parts kept
    else:
        if OmegaConf.is_config(values):  # resolved where it sits: interpolations may point outside it
            values = OmegaConf.to_container(values, resolve=True)
        try:
            built = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
        except ConfigKeyError as error:
            raise unknown_key(schema, error, key) from None
        except (ValidationError, MissingMandatoryValue) as error:  # a value of the wrong type, or a ??? left
            explain(schema, values, str(error.full_key))
            raise
    assert isinstance(built, schema)
    return built


def explain(schema: type, values: Any, full_key: str) -> None:
    """Raise the message of the dataclass holding ``full_key`` for the value ``values`` gives it (its default,
    ``???`` for a required one, when ``values`` gives none), built with its other fields at their defaults;
    return when that dataclass accepts the value (OmegaConf is stricter)."""
    owner, parts = schema, re.findall(r"[^.\[\]]+", full_key)
    for depth, part in enumerate(parts):
        fields = {item.name: item for item in dataclasses.fields(owner)}
        if not isinstance(values, dict) or part not in fields:
            return
        value = values.get(part, fields[part].default)
        hint = typing.get_type_hints(owner).get(part)
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)) or depth == len(parts) - 1:
            with contextlib.suppress(TypeError):  # a required field unset: no message of its own to give
                owner(**{part: value})  # its __post_init__ names the key, the value and the fix
            return
        owner, values = hint, value


def unknown_key(schema: type, error: ConfigKeyError, key: str) -> ConfigError:
    """A key ``schema`` does not have, named under ``key``, with the ones its dataclass has."""
    where = ".".join(part for part in (key, str(error.full_key or error.key)) if part)
    owner = getattr(error, "object_type", None) or schema
    known = sorted(item.name for item in dataclasses.fields(owner)) if dataclasses.is_dataclass(owner) else []
    return ConfigError(f"{where} is not a setting: remove it or fix its spelling; known keys there: {known}")
