"""A warm start for the policy: put most of the untrained policy's probability on a known-good action.

PPO's untrained policy is near-uniform over each action dimension's choices, so early training mostly
explores settings a planner already knows to be poor. Setting the action head's biases so that a chosen index
(for instance the ``headroom_planner``'s utilisation levels) has probability ``p`` starts learning from that
planner: the greedy untrained policy *is* the planner, and PPO learns where to deviate from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO

from disaggpilot.agent.errors import PolicyConfigError


def prior_logits(nvec: Sequence[int], prior_action: Sequence[int], probability: float) -> np.ndarray:
    """Concatenated per-dimension logits: ``probability`` on each prior index, the rest shared evenly."""
    if len(prior_action) != len(nvec):
        raise PolicyConfigError(f"agent.prior_action={list(prior_action)!r} has {len(prior_action)} indices but the "
                                f"action space has {len(nvec)} dimensions {list(nvec)}: give one index per dimension")
    blocks = []
    for dimension, (size, index) in enumerate(zip(nvec, prior_action, strict=True)):
        if not 0 <= index < size:
            raise PolicyConfigError(f"agent.prior_action[{dimension}]={index} is out of range: dimension "
                                    f"{dimension} has {size} choices (indices 0..{size - 1})")
        if size == 1:  # one choice: nothing to bias
            blocks.append(np.zeros(1))
            continue
        block = np.full(size, math.log((1 - probability) / (size - 1)))
        block[index] = math.log(probability)
        blocks.append(block)
    return np.concatenate(blocks)


def apply_prior(model: MaskablePPO, prior_action: Sequence[int], probability: float) -> None:
    """Bias ``model``'s action head towards ``prior_action`` (a ``MultiDiscrete`` action space)."""
    space = model.action_space
    if not isinstance(space, spaces.MultiDiscrete):
        raise PolicyConfigError(f"agent.prior_action needs a MultiDiscrete action space, not {space}: "
                                "set agent.prior_action=null")
    logits = prior_logits([int(n) for n in space.nvec], prior_action, probability)
    head = model.policy.action_net
    if not isinstance(head, torch.nn.Linear) or head.bias is None:
        raise PolicyConfigError(f"agent.prior_action needs a linear action head with a bias, not {head}: "
                                "set agent.prior_action=null")
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(logits, dtype=head.bias.dtype))
