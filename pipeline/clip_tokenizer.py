"""CLIP's tokenizer, built offline from the BPE merges file shipped in ``assets/``.

Stable Diffusion models use OpenAI CLIP's byte-level BPE tokenizer. Its only
data is the merges file ``bpe_simple_vocab_16e6.txt.gz`` (MIT, from open_clip);
the vocabulary follows from it deterministically:

1. the 256 byte symbols of the byte-level alphabet (GPT-2's byte -> unicode map),
2. the same 256 symbols with the end-of-word suffix ``</w>``,
3. one entry per merge (the two halves joined), for the first 48,894 merges,
4. ``<|startoftext|>`` and ``<|endoftext|>``,

49,408 entries in all, the size of every SD text encoder's embedding table.

Trap (transformers 5): ``CLIPTokenizer(vocab_file=..., merges_file=...)`` is
silently ignored and yields a tokenizer that maps every word to one id. Pass
the data itself as ``vocab=`` / ``merges=``; ``clip_tokenizer()`` checks a
known encoding so that a regression fails loudly instead of producing noise.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

from transformers import CLIPTokenizer

__all__ = ["BPE_FILE", "MODEL_MAX_LENGTH", "VOCAB_SIZE", "clip_vocab_and_merges", "clip_tokenizer"]

BPE_FILE = Path(__file__).resolve().parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
MODEL_MAX_LENGTH = 77  # CLIP's context length (SD text encoders share it)
VOCAB_SIZE = 49408
# CLIP uses the first 49152 - 256 - 2 merges of the file (the rest were never trained).
_N_MERGES = VOCAB_SIZE - 2 * 256 - 2
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# "a photo of a cat" as OpenAI CLIP encodes it: the self-check of clip_tokenizer().
_CHECK_TEXT = "a photo of a cat"
_CHECK_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def _byte_alphabet() -> list[str]:
    """One printable unicode character per byte value, in byte-level BPE's order.

    Printable Latin-1 bytes stand for themselves; the remaining bytes (controls,
    space, ...) are mapped to code points 256, 257, ... in increasing byte
    order. The vocabulary lists the printable ones first, then the remapped.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    kept = set(printable)
    remapped = [b for b in range(256) if b not in kept]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(remapped))]


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges(bpe_file: Path = BPE_FILE) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary (token -> id) and merge list derived from ``bpe_file``."""
    if not Path(bpe_file).exists():
        raise FileNotFoundError(f"CLIP BPE merges file not found: {bpe_file}")
    lines = gzip.open(bpe_file, "rt", encoding="utf-8").read().split("\n")
    # line 0 is the "#version" header
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1 : 1 + _N_MERGES], start=1):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{bpe_file}: line {number} is not a merge of two symbols: {line!r}")
        merges.append((parts[0], parts[1]))
    if len(merges) != _N_MERGES:
        raise ValueError(f"{bpe_file}: expected {_N_MERGES} merges, found {len(merges)}")
    alphabet = _byte_alphabet()
    tokens = alphabet + [s + "</w>" for s in alphabet] + [a + b for a, b in merges] + [_BOS, _EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{bpe_file}: derived {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, merges


def clip_tokenizer(model_max_length: int = MODEL_MAX_LENGTH, pad_token: str = _EOS) -> CLIPTokenizer:
    """A transformers ``CLIPTokenizer`` equal to OpenAI CLIP's, built without network access.

    ``pad_token``: SD 1.x pads with ``<|endoftext|>``; SD 2.x and SDXL's second
    tokenizer (OpenCLIP) pad with ``"!"``.
    """
    vocab, merges = clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length, pad_token=pad_token
    )
    ids = tokenizer(_CHECK_TEXT)["input_ids"]
    if ids != _CHECK_IDS:
        raise RuntimeError(
            f"the CLIP tokenizer built from {BPE_FILE} encodes {_CHECK_TEXT!r} as {ids}, "
            f"expected {_CHECK_IDS}; the transformers tokenizer API may have changed"
        )
    return tokenizer
