"""Which episode seeds are for what: the evaluation's seeds are held out from everything that tunes or trains.

``disaggpilot evaluate`` defaults to :data:`EVALUATION_SEEDS` (``configs/evaluate.yaml`` lists the same seeds;
a test keeps the two equal). Training, its validation and every tuned default use other seeds
(``configs/scenario/README.md``, "Which seeds tuned what"); :func:`require_held_out` refuses a training run
whose seeds would reach into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from disaggpilot.env.errors import ConfigError

EVALUATION_SEEDS: tuple[int, ...] = (100, 101, 102, 103, 104)
"""Episode seeds of ``disaggpilot evaluate`` by default; nothing else (training, validation, tuning) uses them."""


def training_reset_seeds(seed: int, n_envs: int) -> set[int]:
    """The seeds a training run resets its environments with.

    Each environment ``rank`` is reset with ``seed * 1000 + rank`` when built and with ``seed + rank`` by the
    vectorised environment's first reset (stable-baselines3's ``VecEnv.seed``); later episodes continue each
    environment's generator unseeded.
    """
    return {seed * 1000 + rank for rank in range(n_envs)} | {seed + rank for rank in range(n_envs)}


def require_held_out(seeds_by_key: Mapping[str, Iterable[int]],
                     evaluation: Iterable[int] = EVALUATION_SEEDS) -> None:
    """Raise when any of the named seed sets shares a seed with the evaluation's.

    Args:
        seeds_by_key: config key → the seeds it makes a run use (e.g. ``run.validation_seeds``).
        evaluation: the held-out evaluation seeds.

    Raises:
        ConfigError: naming every key whose seeds overlap the evaluation seeds, and the shared seeds.
    """
    held_out = set(evaluation)
    clashes = {key: sorted(set(seeds) & held_out) for key, seeds in seeds_by_key.items()}
    clashes = {key: shared for key, shared in clashes.items() if shared}
    if clashes:
        named = "; ".join(f"{key} uses {shared}" for key, shared in clashes.items())
        raise ConfigError(f"{named}: seeds {sorted(held_out)} are held out for `disaggpilot evaluate` "
                          "(agent.seeds.EVALUATION_SEEDS); pick training and validation seeds outside them")
