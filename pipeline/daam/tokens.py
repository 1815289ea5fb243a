"""Words and tokens of a prompt: which text-encoder tokens make up each word.

A prompt is split into words (runs of letters/digits, with apostrophe suffixes
such as "dog's", or runs of punctuation) and into tokens by the pipeline's own
tokenizer; a word owns every token whose character span overlaps it. Only the
first ``model_max_length - 2`` tokens reach the text encoder (BOS and EOS take
the other two places); words with a token past that limit are "missing".
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HeatMapLookupError",
    "PromptTruncatedWarning",
    "TokenAlignment",
    "TruncatedWordError",
    "UnknownWordError",
    "Word",
    "align_prompt",
    "split_words",
]

_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]+")


class HeatMapLookupError(KeyError):
    """A word or span of the prompt has no heat map."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class UnknownWordError(HeatMapLookupError):
    """The word (or occurrence, or span) is not in the prompt."""


class TruncatedWordError(HeatMapLookupError):
    """The word lies past the text encoder's token limit, so the model never saw it."""


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the text encoder's limit; its tail has no heat maps."""


@dataclass(frozen=True)
class Word:
    """One word of the prompt: its text, character span, tokens and occurrence number."""

    text: str
    start: int  # character span [start, end) in the prompt
    end: int
    tokens: tuple[int, ...]  # indices of its tokens (0 = the prompt's first token, BOS excluded)
    occurrence: int  # 0 for the first word with this (lower-cased) text, 1 for the second, ...
    truncated: bool  # some token of it lies past the text encoder's limit


def split_words(prompt: str) -> list[tuple[str, int, int]]:
    """(text, start, end) of each word of ``prompt``."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(prompt)]


@dataclass(frozen=True)
class TokenAlignment:
    """How a prompt was tokenized: every token's character span and how many fit."""

    prompt: str
    spans: tuple[tuple[int, int], ...]  # character span of every token, including those past the limit
    n_kept: int  # tokens that reached the text encoder
    first_position: int = 1  # position of the first prompt token in the encoder's sequence (after BOS)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The kept tokens, each as the piece of the prompt it covers."""
        return tuple(self.prompt[s:e] for s, e in self.spans[: self.n_kept])

    @property
    def truncated(self) -> bool:
        return len(self.spans) > self.n_kept

    def words(self) -> list[Word]:
        seen: Counter[str] = Counter()
        out = []
        for text, start, end in split_words(self.prompt):
            toks = tuple(i for i, (s, e) in enumerate(self.spans) if s < end and e > start and e > s)
            key = text.lower()
            out.append(Word(text, start, end, toks, seen[key], any(t >= self.n_kept for t in toks)))
            seen[key] += 1
        return out

    def span_tokens(self, start: int, end: int) -> tuple[int, ...]:
        """Indices of the tokens overlapping characters [start, end) (kept or not)."""
        if not (0 <= start < end <= len(self.prompt)):
            raise UnknownWordError(f"span [{start}, {end}) is not a non-empty span of the prompt {self.prompt!r}")
        return tuple(i for i, (s, e) in enumerate(self.spans) if s < end and e > start and e > s)


def align_prompt(tokenizer: Any, prompt: str) -> TokenAlignment:
    """Tokenize ``prompt`` as the pipeline does and record each token's character span.

    Needs a "fast" (Rust-backed) tokenizer for offsets, which transformers'
    ``CLIPTokenizer`` is. Warns with ``PromptTruncatedWarning`` when the prompt
    does not fit.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    try:
        enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    except NotImplementedError as err:
        raise TypeError(
            f"{type(tokenizer).__name__} cannot report character offsets; heat maps need a fast tokenizer"
        ) from err
    spans = tuple((int(s), int(e)) for s, e in enc["offset_mapping"])
    limit = int(tokenizer.model_max_length) - int(tokenizer.num_special_tokens_to_add())
    n_kept = min(len(spans), max(limit, 0))
    if len(spans) > n_kept:
        cut = spans[n_kept][0]
        warnings.warn(
            f"prompt needs {len(spans)} tokens but the text encoder takes {limit}; "
            f"no heat maps for the text from character {cut}: {prompt[cut:]!r}",
            PromptTruncatedWarning,
            stacklevel=3,
        )
    specials = tokenizer("")["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    first_position = 1 if bos is not None and specials and specials[0] == bos else 0
    return TokenAlignment(prompt, spans, n_kept, first_position)
