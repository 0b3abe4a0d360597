"""A GPU-timed vLLM replica emulator, for the local rig where real vLLM on a CPU cannot show GPU timing.

It answers like one vLLM replica (OpenAI ``/v1/completions`` and ``/v1/chat/completions`` with streaming,
``/v1/models``, ``/health``, ``/metrics`` with vLLM 0.32's families, labels and bucket edges, the P/D
``kv_transfer_params`` handshake of vLLM's NixlConnector) but computes nothing: it times vLLM-style
continuous batching with ``env.perf``'s performance model for a configured model and GPU (by default
Llama-3.1-70B on 4 H100s). Run it with ``python -m disaggpilot.localcluster.emulator --role decode --port 8101 ...``
(``--help`` lists the flags; :class:`EmulatorConfig` documents them).

What it does not capture of vLLM: tokenization (one word is one token) and sampling (the answer is always
``max_tokens`` words ``tok0 tok1 ...``; no stop strings, no EOS); prefix caching; CUDA graphs and their
padding; the CPU-side overheads of the API server and detokenizer beyond the fitted per-iteration overhead;
KV transfers contending for a link, NIXL failures, and a decode replica's real pull (the prefill side frees
the KV after the transfer time, without hearing from the decode side); speculative decoding, LoRA,
multi-modal inputs, ``n > 1``, ``best_of``, logprobs; admission queue limits.
"""

from disaggpilot.localcluster.emulator.config import EmulatorConfig
from disaggpilot.localcluster.emulator.engine import Engine, EngineLimits, EngineRequest, VirtualClock, WallClock
from disaggpilot.localcluster.emulator.server import ReplicaServer

__all__ = ["EmulatorConfig", "Engine", "EngineLimits", "EngineRequest", "ReplicaServer", "VirtualClock",
           "WallClock"]
