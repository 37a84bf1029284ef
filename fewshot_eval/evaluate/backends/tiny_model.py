"""``weights: tiny-gpt2``: a tiny GPT-2 built locally, no download, the same on every machine.

2 layers, 64 dims, 4 heads, 1024 positions, weights from ``torch.manual_seed(0)`` with a
wide init (std 0.2, so candidates get clearly different scores). The tokenizer is byte-level
BPE needing no files: the 256 byte symbols plus fixed merges of a few common English
pieces (so, like GPT-2, ``" the"`` is one token and where the space goes matters) and
``<|endoftext|>``. It is saved once, atomically, to ``$FEWSHOT_EVAL_CACHE/tiny-gpt2-v1``
(default ``~/.cache/fewshot_eval``), so lm-evaluation-harness can load the very same model
with ``pretrained=<that path>``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fewshot_eval.config import cache_dir

VERSION = "tiny-gpt2-v1"
EOS = "<|endoftext|>"
_PIECES = (
    " the", " and", " to", " of", " a", " in", " is", " was", " he", " she", " it", " for", " on", " at",
    " by", " with", " his", " her", " The", " A", " because", " so", " right", " Yes", " No", " Maybe",
    " True", " False", " Neither", " Answer", " Question", " der", " die", " das", " und", " Ja", " Nein",
    "ing", "ed", "er", "en", "es", "th", "ou", "an", "on", "re", "at", "st", "nd",
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over a byte-level BPE with fixed merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    b2u = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    merges: list[tuple[str, str]] = []
    for piece in _PIECES:
        symbols = [b2u[b] for b in piece.encode("utf-8")]
        tok = symbols[0]
        for sym in symbols[1:]:
            merged = tok + sym
            if merged not in vocab:
                merges.append((tok, sym))
                vocab[merged] = len(vocab)
            tok = merged
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=None, model_max_length=1024)


def build_model(vocab_size: int, eos_id: int, n_embd: int = 64, n_layer: int = 2, n_head: int = 4):
    """A GPT-2 with seeded weights (the tiny one by default; the benchmarks build wider ones)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=1024, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        initializer_range=0.2, bos_token_id=eos_id, eos_token_id=eos_id,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def build_tiny_gpt2(path: str | os.PathLike) -> Path:
    """Build the tiny GPT-2 + tokenizer into ``path`` (atomically: a temp dir, then rename)."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tokenizer = build_tokenizer()
        model = build_model(len(tokenizer), tokenizer.eos_token_id)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        from fewshot_eval.store.atomic import dir_mode

        os.chmod(tmp, dir_mode())  # mkdtemp makes it 0700: a shared cache must follow the umask like results
        try:
            os.rename(tmp, path)
        except OSError:  # another process won the race; its copy is identical
            if not (path / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def tiny_gpt2_path() -> Path:
    """The cached tiny GPT-2, built on first use."""
    return build_tiny_gpt2(cache_dir() / VERSION)
