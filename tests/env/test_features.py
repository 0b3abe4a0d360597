"""Features by name: the registry computes every listed name, and a layout is just a list of names."""

from __future__ import annotations

import numpy as np
import pytest

from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.features import CLUSTER, POOL, TENANT, resolve
from disaggpilot.env.observation import CLUSTER_LAYOUT, POOL_LAYOUT, TENANT_LAYOUT, ObservationConfig, feature_names

EVERY_FLAG = ObservationConfig(cold_start_feature=True, budget_features=True, burst_features=True)


def test_every_name_a_run_lists_is_registered_and_documented() -> None:
    assert set(TENANT_LAYOUT) | {"miss_budget_left", "peak_rate_ratio"} == set(TENANT)
    assert set(POOL_LAYOUT) == set(POOL) and set(CLUSTER_LAYOUT) | {"cold_start", "time_left"} == set(CLUSTER)
    assert all(resolve(name) is not None for name in feature_names(EVERY_FLAG))
    assert all(feature.doc for registry in (TENANT, POOL, CLUSTER) for feature in registry.values())


@pytest.mark.parametrize("name", ["foo/bar", "tenant0/foo", "tenant01/present", "pool/middle/ready",
                                  "pool/decode/foo", "cluster/foo", "cluster/present"])
def test_names_this_version_does_not_compute_resolve_to_none(name: str) -> None:
    assert resolve(name) is None


def observe(observation: ObservationConfig, steps: int = 4) -> list[np.ndarray]:
    environment = DisaggClusterEnv("flash_crowd", config=EnvConfig(observation=observation, horizon_s=600.0))
    observations = [environment.reset(seed=3)[0]]
    observations += [environment.step(environment.codec.neutral(environment.snapshot))[0] for _ in range(steps)]
    return observations


def test_a_listed_layout_observes_those_names_in_that_order_whatever_the_flags() -> None:
    full_names = feature_names(EVERY_FLAG)
    chosen = ["cluster/time_left", "tenant0/arrival_trend", "pool/decode/ready", "tenant0/miss_budget_left",
              "cluster/cold_start"]
    listed = ObservationConfig(features=chosen)  # no flag on: the list decides
    assert feature_names(listed) == chosen
    for full, part in zip(observe(EVERY_FLAG), observe(listed), strict=True):
        assert np.array_equal(part, full[[full_names.index(name) for name in chosen]])


def test_an_unknown_or_repeated_feature_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"env\.observation\.features lists 'cluster/foo', which this version "
                                          r"does not compute \(it computes tenant<i>/\{present,"):
        ObservationConfig(features=["tenant0/present", "cluster/foo"])
    with pytest.raises(ConfigError, match=r"env\.observation\.features=.* list each feature once"):
        ObservationConfig(features=["cluster/spend_rate", "cluster/spend_rate"])
