"""Settings dataclasses built by OmegaConf: typed from a mapping or a composed config, nested parts included.

Kept apart from ``env.config_store`` (which imports the settings of the simulator and of the live backend) so that
any settings module may use it without joining the two backends' imports.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

SchemaT = TypeVar("SchemaT")


def defaults_node(schema: type) -> DictConfig:
    """``schema``'s defaults as an untyped config: its keys exist (``env.interval_s=60`` overrides, a misspelt
    key is refused) and its defaults come from the dataclass alone, but values are checked by the dataclass's
    own validation, whose messages name the fix (``env.interval_s='abc' is invalid: use a number``), not by
    OmegaConf. For schemas whose type errors the command line's messages pin (``env``, ``run``)."""
    return OmegaConf.create(dataclasses.asdict(schema()))


def build(schema: type[SchemaT], values: Any) -> SchemaT:
    """``schema`` (a settings dataclass) built by OmegaConf from a mapping or a config node: nested dataclasses
    included, each validated by its ``__post_init__``; an unknown key or a value of the wrong type raises
    OmegaConf's error, naming the key."""
    if isinstance(values, DictConfig) and OmegaConf.get_type(values) is schema:
        built = OmegaConf.to_object(values)  # composed against the schema already: typed, and frozen parts kept
    else:
        if OmegaConf.is_config(values):  # resolved where it sits: interpolations may point outside it
            values = OmegaConf.to_container(values, resolve=True)
        built = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    assert isinstance(built, schema)
    return built
