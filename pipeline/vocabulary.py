"""Vocabularies: which nouns are objects, and the category each one belongs to.

Two kinds:

- **open** (``"open"``): every noun is its own category, named by its lemma.
  It still knows a lexicon of multi-word nouns ("hot dog", "teddy bear",
  "ice cream", ...) so that these are joined into one object even when spaCy
  tags the first word as an adjective or misparses the pair; the lexicon is
  every multi-word term of the shipped COCO vocabulary plus ``EXTRA_PHRASES``.
- **fixed** (``"coco80"``, or a path to a YAML file): a mapping
  ``category -> [synonym, ...]``. Only nouns that match a term (the category
  name or one of its synonyms) are objects; category ids follow the file's
  order. ``configs/vocab/coco80.yaml`` ships COCO's 80 classes.

Terms are matched on token sequences: a term ``"teddy bear"`` matches two
consecutive tokens whose lemma *or* lower-cased text are "teddy" and "bear",
so plurals ("teddy bears") and irregular forms written in the file
("people", "men") both match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from pipeline.config import CONFIG_DIR, ConfigError

__all__ = [
    "OPEN",
    "VOCAB_DIR",
    "EXTRA_PHRASES",
    "Vocabulary",
    "VocabularyError",
    "load_vocabulary",
    "category_names",
]

OPEN = "open"
VOCAB_DIR = CONFIG_DIR / "vocab"

# Multi-word nouns the open vocabulary joins besides the COCO ones. Kept short
# on purpose: dependency parses already join most compounds ("stop sign"); these
# are the common ones spaCy's small model gets wrong (adjective + noun readings).
EXTRA_PHRASES: tuple[str, ...] = (
    "ice cream",
    "french fries",
    "hot air balloon",
    "living room",
    "polar bear",
    "brown bear",
    "black bear",
    "grizzly bear",
    "sports car",
    "sweet potato",
    "cotton candy",
    "christmas tree",
    "high chair",
)


class VocabularyError(ConfigError):
    """A vocabulary name or file is unknown or malformed (a config problem, shown without a traceback)."""


def _term(text: str) -> tuple[str, ...]:
    return tuple(text.lower().split())


@dataclass(frozen=True)
class Vocabulary:
    """Terms (token sequences) mapped to categories.

    ``categories`` is the category list in vocabulary order for a fixed
    vocabulary, and ``None`` for the open one (whose categories are whatever
    nouns the corpus holds).
    """

    name: str
    categories: tuple[str, ...] | None
    terms: Mapping[tuple[str, ...], str] = field(default_factory=dict)
    max_term_length: int = field(init=False, repr=False, compare=False)
    multi_word_starts: frozenset[str] = field(init=False, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.categories is None

    def __post_init__(self) -> None:
        # derived once: parse_doc asks for these for every token of every prompt
        object.__setattr__(self, "max_term_length", max((len(t) for t in self.terms), default=1))
        object.__setattr__(self, "multi_word_starts", frozenset(t[0] for t in self.terms if len(t) > 1))

    def lookup(self, words: tuple[str, ...]) -> str | None:
        """The category of the term ``words`` (lower-case), or None."""
        return self.terms.get(words)


def _open_vocabulary() -> Vocabulary:
    phrases: dict[tuple[str, ...], str] = {}
    coco = _read_fixed(VOCAB_DIR / "coco80.yaml", "coco80")
    for term in [*coco.terms, *map(_term, EXTRA_PHRASES)]:
        if len(term) > 1:
            # open: the phrase names itself ("mobile phone" stays "mobile phone")
            phrases[term] = " ".join(term)
    return Vocabulary(name=OPEN, categories=None, terms=MappingProxyType(phrases))


def _read_fixed(path: Path, name: str) -> Vocabulary:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise VocabularyError(f"vocabulary {path}: not valid YAML: {err}") from err
    if not isinstance(data, dict) or not data:
        raise VocabularyError(
            f"vocabulary {path}: expected a non-empty mapping 'category: [synonym, ...]', got {type(data).__name__}"
        )
    categories: list[str] = []
    terms: dict[tuple[str, ...], str] = {}
    for raw_category, synonyms in data.items():
        if not isinstance(raw_category, str) or not raw_category.strip():
            raise VocabularyError(f"vocabulary {path}: category {raw_category!r} is not a non-empty string")
        category = " ".join(raw_category.lower().split())
        if synonyms is None:
            synonyms = []
        if not isinstance(synonyms, list) or not all(isinstance(s, str) and s.strip() for s in synonyms):
            raise VocabularyError(
                f"vocabulary {path}: category {raw_category!r}: expected a list of non-empty strings, got {synonyms!r}"
            )
        if category in categories:
            raise VocabularyError(f"vocabulary {path}: category {category!r} is listed twice")
        categories.append(category)
        for text in [category, *synonyms]:
            term = _term(text)
            other = terms.get(term)
            if other is not None and other != category:
                raise VocabularyError(
                    f"vocabulary {path}: term {' '.join(term)!r} is given for both {other!r} and {category!r}"
                )
            terms[term] = category
    return Vocabulary(name=name, categories=tuple(categories), terms=MappingProxyType(terms))


def load_vocabulary(spec: str | Path) -> Vocabulary:
    """The vocabulary named by ``spec``: "open", a file name in ``configs/vocab``
    without its suffix (e.g. "coco80"), or a path to a YAML file."""
    spec_str = str(spec)
    if spec_str == OPEN:
        return _open_vocabulary()
    shipped = VOCAB_DIR / f"{spec_str}.yaml"
    if "/" not in spec_str and not spec_str.endswith((".yaml", ".yml")) and shipped.exists():
        return _read_fixed(shipped, spec_str)
    path = Path(spec_str).expanduser()
    if not path.exists():
        known = sorted(p.stem for p in VOCAB_DIR.glob("*.yaml"))
        raise VocabularyError(
            f"vocabulary {spec_str!r}: no such file; use 'open', one of {known}, or a path to a YAML file"
        )
    return _read_fixed(path, spec_str)


def category_names(vocabulary: Vocabulary | str | Path, found: Iterable[str] = ()) -> list[str]:
    """Category names in id order (ids are 1.. in this order).

    Fixed vocabulary: the file's order. Open vocabulary: the categories
    ``found`` in the data, sorted by name (the contract's rule), since an open
    vocabulary has no list of its own.
    """
    vocab = vocabulary if isinstance(vocabulary, Vocabulary) else load_vocabulary(vocabulary)
    if vocab.categories is not None:
        return list(vocab.categories)
    return sorted(set(found))
