"""spaCy parsing and object finding: tokens, lemmas, compounds, vocabularies."""

from __future__ import annotations

from pathlib import Path

import pytest
from spacy.language import Language

from pipeline.config import ExtractConfig
from pipeline.nlp import NO_NOUNS, NO_VOCAB_NOUNS, ParsedPrompt, SpacyModelError, load_nlp, parse_prompts
from pipeline.vocabulary import VocabularyError, Vocabulary, category_names, load_vocabulary

MODEL = ExtractConfig().spacy_model


@pytest.fixture(scope="module")
def nlp() -> Language:
    return load_nlp(MODEL)


@pytest.fixture(scope="module")
def open_vocab() -> Vocabulary:
    return load_vocabulary("open")


@pytest.fixture(scope="module")
def coco80() -> Vocabulary:
    return load_vocabulary("coco80")


def parse(nlp: Language, vocab: Vocabulary, text: str) -> ParsedPrompt:
    (parsed,) = parse_prompts(nlp, [text], 8, vocab)
    return parsed


def objects(parsed: ParsedPrompt) -> list[tuple[str, str]]:
    return [(o.text, o.category) for o in parsed.objects]


def test_load_nlp_excludes_ner_and_names_a_missing_model(nlp: Language) -> None:
    assert "ner" not in nlp.pipe_names and "parser" in nlp.pipe_names
    with pytest.raises(SpacyModelError) as err:
        load_nlp("en_no_such_model_xx")
    assert "en_no_such_model_xx" in str(err.value) and "pip install" in str(err.value)


def test_every_token_is_recorded_with_consistent_annotations(nlp: Language, open_vocab: Vocabulary) -> None:
    text = "Two dogs, and a cat sleeping on the sofa."
    parsed = parse(nlp, open_vocab, text)
    assert [w.word_index for w in parsed.words] == list(range(len(parsed.words)))
    assert "".join(w.text for w in parsed.words) == text.replace(" ", "")
    for w in parsed.words:
        assert text[w.start_char : w.end_char] == w.text
        assert 0 <= w.head < len(parsed.words)
        assert w.pos and w.tag and w.dep and w.lemma
    by_text = {w.text: w for w in parsed.words}
    assert by_text["dogs"].lemma == "dog" and by_text["dogs"].tag == "NNS" and by_text["dogs"].pos == "NOUN"
    assert by_text["Two"].pos == "NUM" and by_text[","].pos == "PUNCT"
    assert by_text["sleeping"].lemma == "sleep"
    # every token of an object points to it, and no other token does
    for obj in parsed.objects:
        members = [w.word_index for w in parsed.words if w.object_index == obj.object_index]
        assert members == list(range(obj.word_start, obj.word_end))
        assert text[obj.start_char : obj.end_char] == obj.text


def test_objects_are_nouns_named_by_lower_case_lemma(nlp: Language, open_vocab: Vocabulary) -> None:
    parsed = parse(nlp, open_vocab, "The men and women walk three Dogs past the bicycles")
    assert objects(parsed) == [("men", "man"), ("women", "woman"), ("Dogs", "dog"), ("bicycles", "bicycle")]
    assert [o.object_index for o in parsed.objects] == [0, 1, 2, 3]
    assert parsed.skip_reason is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a teddy bear next to a hot dog", [("teddy bear", "teddy bear"), ("hot dog", "hot dog")]),
        ("three hot dogs and ice cream", [("hot dogs", "hot dog"), ("ice cream", "ice cream")]),
        ("a fire hydrant near a stop sign", [("fire hydrant", "fire hydrant"), ("stop sign", "stop sign")]),
        ("two teddy bears sitting on a bed", [("teddy bears", "teddy bear"), ("bed", "bed")]),
        # joined by the parser's compound relation alone (not in any lexicon)
        ("a police car by a bus stop", [("police car", "police car"), ("bus stop", "bus stop")]),
    ],
)
def test_compound_nouns_are_one_object(
    nlp: Language, open_vocab: Vocabulary, text: str, expected: list[tuple[str, str]]
) -> None:
    parsed = parse(nlp, open_vocab, text)
    assert objects(parsed) == expected
    for obj in parsed.objects:
        assert obj.word_end - obj.word_start == len(obj.text.split())


def test_a_repeated_word_gives_two_objects(nlp: Language, open_vocab: Vocabulary) -> None:
    parsed = parse(nlp, open_vocab, "a dog chasing another dog")
    assert objects(parsed) == [("dog", "dog"), ("dog", "dog")]
    first, second = parsed.objects
    assert (first.word_start, second.word_start) == (1, 4)
    assert first.start_char != second.start_char


def test_complex_prepositions_are_not_objects(nlp: Language, open_vocab: Vocabulary) -> None:
    parsed = parse(nlp, open_vocab, "a red car in front of a small house")
    assert objects(parsed) == [("car", "car"), ("house", "house")]
    front = next(w for w in parsed.words if w.text == "front")
    assert front.pos == "NOUN" and front.object_index is None
    assert objects(parse(nlp, open_vocab, "a cat in the middle of a road")) == [("cat", "cat"), ("road", "road")]


def test_participles_misread_as_compound_heads_are_not_objects(nlp: Language, open_vocab: Vocabulary) -> None:
    # the small model parses "zebra standing" as a noun compound headed by "standing"
    parsed = parse(nlp, open_vocab, "Three zebra standing next to each other")
    standing = next(w for w in parsed.words if w.text == "standing")
    zebra = next(w for w in parsed.words if w.text == "zebra")
    assert (zebra.dep, zebra.head) == ("compound", standing.word_index)  # the misparse this guards against
    assert objects(parsed) == [("zebra", "zebra")]
    sitting = parse(nlp, open_vocab, "Man wearing a helmet sitting on a motor scooter")
    assert ("sitting", "NOUN") in [(w.text, w.pos) for w in sitting.words]  # the mistag
    assert objects(sitting) == [("Man", "man"), ("helmet", "helmet"), ("motor scooter", "motor scooter")]
    # a real noun in -ing still heads its compound
    assert objects(parse(nlp, open_vocab, "an apartment building")) == [("apartment building", "apartment building")]


def test_prompts_without_nouns_are_skipped(nlp: Language, open_vocab: Vocabulary, coco80: Vocabulary) -> None:
    assert parse(nlp, open_vocab, "running quickly and happily").skip_reason == NO_NOUNS
    no_class = parse(nlp, coco80, "a castle on a mountain")
    assert no_class.skip_reason == NO_VOCAB_NOUNS and no_class.objects == ()
    # the words are still there, none of them in an object
    assert [w.text for w in no_class.words] == ["a", "castle", "on", "a", "mountain"]
    assert all(w.object_index is None for w in no_class.words)


def test_coco80_synonyms_and_multi_word_classes(nlp: Language, coco80: Vocabulary) -> None:
    parsed = parse(nlp, coco80, "A man and two kids on a sofa with a cell phone near a dining table in a garden")
    assert objects(parsed) == [
        ("man", "person"),
        ("kids", "person"),
        ("sofa", "couch"),
        ("cell phone", "cell phone"),
        ("dining table", "dining table"),
    ]
    garden = next(w for w in parsed.words if w.text == "garden")
    assert garden.pos == "NOUN" and garden.object_index is None  # a noun, but not a COCO class
    # multi-word classes win over their last word; a compound run takes its head's class
    assert objects(parse(nlp, coco80, "a teddy bear and a brown bear")) == [
        ("teddy bear", "teddy bear"),
        ("brown bear", "bear"),
    ]
    assert objects(parse(nlp, coco80, "a police car")) == [("police car", "car")]
    # a run whose head is no class but whose modifier is: the modifier is the object
    (clock,) = parse(nlp, coco80, "a large clock tower by the sea").objects
    assert (clock.text, clock.category, clock.word_start, clock.word_end) == ("clock", "clock", 2, 3)


def test_batching_does_not_change_results(nlp: Language, open_vocab: Vocabulary) -> None:
    texts = ["a cat on a mat", "nothing here runs", "a hot dog", "two zebras and a giraffe", "a stop sign"]
    one = list(parse_prompts(nlp, texts, 1, open_vocab))
    many = list(parse_prompts(nlp, texts, 64, open_vocab))
    assert one == many
    assert [p.prompt for p in one] == texts
    with pytest.raises(ValueError, match="batch_size"):
        list(parse_prompts(nlp, texts, 0, open_vocab))


def test_coco80_vocabulary_file() -> None:
    names = category_names("coco80")
    assert len(names) == len(set(names)) == 80
    assert names[:3] == ["person", "bicycle", "car"] and names[-1] == "toothbrush"
    assert {
        "hot dog",
        "teddy bear",
        "traffic light",
        "fire hydrant",
        "stop sign",
        "parking meter",
        "wine glass",
    } <= set(names)
    vocab = load_vocabulary("coco80")
    assert vocab.lookup(("woman",)) == "person" and vocab.lookup(("cell", "phone")) == "cell phone"
    # open: the categories found, sorted by name
    assert category_names("open", ["dog", "cat", "dog"]) == ["cat", "dog"]


def test_custom_vocabulary_file(tmp_path: Path, nlp: Language) -> None:
    path = tmp_path / "pets.yaml"
    path.write_text("dog: [puppy, hound]\ncat: [kitten]\nguinea pig: []\n", encoding="utf-8")
    vocab = load_vocabulary(str(path))
    assert category_names(vocab) == ["dog", "cat", "guinea pig"]
    parsed = parse(nlp, vocab, "a puppy, two kittens and a guinea pig on a rug")
    assert objects(parsed) == [("puppy", "dog"), ("kittens", "cat"), ("guinea pig", "guinea pig")]

    clash = tmp_path / "clash.yaml"
    clash.write_text("dog: [pet]\ncat: [pet]\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match="'pet' is given for both 'dog' and 'cat'"):
        load_vocabulary(str(clash))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- dog\n- cat\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match="expected a non-empty mapping"):
        load_vocabulary(str(bad))
    with pytest.raises(VocabularyError, match="no such file"):
        load_vocabulary("no_such_vocabulary")


def test_a_colour_read_as_a_proper_noun_compound_stays_an_attribute(nlp: Language, open_vocab: Vocabulary) -> None:
    # the small model parses "white house" as the proper name "White House"
    parsed = parse(nlp, open_vocab, "a red car in front of a white house")
    assert objects(parsed) == [("car", "car"), ("house", "house")]
