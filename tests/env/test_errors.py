"""``env.errors``' validators: each names the key, the bad value and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from disaggpilot.env.errors import ConfigError, check_types, require_seconds, require_seed, require_seeds


@dataclass
class Settings:
    count: int = 1
    scale: float | None = None
    seeds: list[int] = field(default_factory=list)
    verbose: bool = True
    name: str = "x"
    nested: dict[str, float] = field(default_factory=dict)


@pytest.mark.parametrize(("fields", "message"), [
    ({"count": "abc"}, "run.count='abc' is invalid: use an integer"),
    ({"count": True}, "run.count=True is invalid: use an integer"),
    ({"scale": "abc"}, "run.scale='abc' is invalid: use a number or null"),
    ({"seeds": [1, "a"]}, r"run.seeds=\[1, 'a'\] is invalid: use a list of integers"),
    ({"verbose": "yes"}, "run.verbose='yes' is invalid: use true or false"),
    ({"name": 3}, "run.name=3 is invalid: use a string"),
])
def test_a_value_of_the_wrong_type_is_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_types(Settings(**fields), "run")  # type: ignore[arg-type]


def test_values_of_the_right_type_pass_and_other_annotations_are_left_alone() -> None:
    check_types(Settings(count=2, scale=3, seeds=[0, 1], nested={"a": "not checked"}), "run")  # type: ignore[dict-item]


def test_seeds_and_seconds() -> None:
    assert require_seed("seed", 3) == 3 and require_seeds("seeds", (0, 2)) == [0, 2]
    assert require_seconds("duration_s", 5) == 5.0 and require_seconds("duration_s", None, optional=True) is None
    for bad in (1.5, -1, True, "1"):
        with pytest.raises(ConfigError, match="seed="):
            require_seed("seed", bad)
    with pytest.raises(ConfigError, match=r"seeds=\[\] is invalid: list integers >= 0"):
        require_seeds("seeds", [])
    with pytest.raises(ConfigError, match="duration_s=0 is invalid: use a positive number of seconds"):
        require_seconds("duration_s", 0)
    with pytest.raises(ConfigError, match="duration_s=None is invalid"):
        require_seconds("duration_s", None)
