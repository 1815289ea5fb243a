"""Words to tokens, lookups on HeatMap, long prompts, and the file format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pipeline.clip_tokenizer import clip_tokenizer
from pipeline.daam import (
    HeatMap,
    HeatMapLookupError,
    PromptTruncatedWarning,
    TruncatedWordError,
    UnknownWordError,
    trace,
)
from pipeline.daam.tokens import align_prompt
from pipeline.masks import binary_mask


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


def synthetic(tokenizer, prompt: str, size=(4, 6), **kwargs) -> HeatMap:
    """A HeatMap whose token j's map is filled with j + 1 (so means are easy to check)."""
    a = align_prompt(tokenizer, prompt)
    maps = np.stack([np.full(size, j + 1, dtype=np.float32) for j in range(a.n_kept)])
    return HeatMap(prompt=prompt, token_spans=a.spans, maps=maps, image_size=(32, 48), **kwargs)


def test_tokens_are_the_tokenizers_split(tokenizer):
    hm = synthetic(tokenizer, "A Skateboarder, jumping!")
    # CLIP lower-cases and splits "skateboarder" into two tokens; punctuation is its own token
    assert hm.tokens == ("A", "Skate", "boarder", ",", "jumping", "!")
    assert [w.text for w in hm.words] == ["A", "Skateboarder", ",", "jumping", "!"]
    assert hm.words[1].tokens == (1, 2)


def test_multi_token_word_is_the_mean_of_its_tokens(tokenizer):
    hm = synthetic(tokenizer, "a skateboarder")
    np.testing.assert_array_equal(hm.word("skateboarder"), np.full((4, 6), (2 + 3) / 2, dtype=np.float32))


def test_case_insensitive_and_punctuation(tokenizer):
    hm = synthetic(tokenizer, "A Cat, a DOG.")
    np.testing.assert_array_equal(hm.word("cat"), hm.word("CAT"))
    np.testing.assert_array_equal(hm.word("dog"), hm.token_map(4))
    np.testing.assert_array_equal(hm.word(","), hm.token_map(2))
    np.testing.assert_array_equal(hm.word("."), hm.token_map(5))


def test_repeated_words_by_occurrence(tokenizer):
    hm = synthetic(tokenizer, "a teapot next to a Teapot")
    first, second = hm.word("teapot"), hm.word("teapot", occurrence=1)
    np.testing.assert_array_equal(first, hm.token_map(1))
    np.testing.assert_array_equal(second, hm.token_map(5))
    assert [w.occurrence for w in hm.words if w.text.lower() == "teapot"] == [0, 1]
    with pytest.raises(UnknownWordError, match="occurs 2 time"):
        hm.word("teapot", occurrence=2)


def test_phrases_and_spans(tokenizer):
    prompt = "a hot dog on a plate"
    hm = synthetic(tokenizer, prompt)
    start = prompt.index("hot dog")
    np.testing.assert_array_equal(hm.span(start, start + len("hot dog")), hm.word("hot dog"))
    np.testing.assert_array_equal(hm.word("hot dog"), (hm.token_map(1) + hm.token_map(2)) / 2)
    # a span inside a word takes the token(s) it overlaps
    np.testing.assert_array_equal(hm.span(start + 1, start + 2), hm.token_map(1))
    with pytest.raises(UnknownWordError):
        hm.span(1, 2)  # the space between "a" and "hot"
    with pytest.raises(UnknownWordError):
        hm.span(5, 500)


def test_unknown_word_lists_the_prompts_words(tokenizer):
    hm = synthetic(tokenizer, "a red teapot")
    with pytest.raises(UnknownWordError) as err:
        hm.word("kettle")
    assert isinstance(err.value, KeyError)
    assert "'kettle'" in str(err.value) and "['a', 'red', 'teapot']" in str(err.value)


def long_prompt(n_words: int) -> str:
    nouns = ["cat", "dog", "teapot", "table", "lamp", "chair", "river", "tree"]
    return " and ".join(f"a {nouns[i % len(nouns)]}{i}" for i in range(n_words // 3)) + " under a zebra"


def test_over_limit_prompt_keeps_what_fits(tokenizer):
    prompt = long_prompt(90)
    with pytest.warns(PromptTruncatedWarning):
        a = align_prompt(tokenizer, prompt)
    limit = tokenizer.model_max_length - 2
    assert len(a.spans) > limit and a.n_kept == limit
    with pytest.warns(PromptTruncatedWarning):
        hm = synthetic(tokenizer, prompt)
    assert len(hm.tokens) == limit and hm.truncated and hm.n_prompt_tokens == len(a.spans)
    assert "zebra" in [w.text for w in hm.missing_words]
    with pytest.raises(TruncatedWordError, match="past the text encoder's limit") as err:
        hm.word("zebra")
    assert isinstance(err.value, HeatMapLookupError) and isinstance(err.value, KeyError)
    z = prompt.index("zebra")
    with pytest.raises(TruncatedWordError):
        hm.span(z, z + 5)
    hm.word("cat0")  # words before the limit still work


def test_over_limit_prompt_through_the_pipeline(embedded_pipe):
    prompt = long_prompt(90)
    with pytest.warns(PromptTruncatedWarning):
        with trace(embedded_pipe) as tracer:
            embedded_pipe([prompt, "a teapot"], num_inference_steps=2, output_type="latent")
    long, short = tracer.heat_maps()
    assert len(long.tokens) == embedded_pipe.tokenizer.model_max_length - 2
    assert long.truncated and not short.truncated
    assert short.tokens == ("a", "teapot") and short.maps.shape[0] == 2
    with pytest.raises(TruncatedWordError):
        long.word("zebra")


def test_upsample_and_mask(tokenizer):
    a = align_prompt(tokenizer, "a teapot")
    heat = np.zeros((2, 4, 6), dtype=np.float32)
    heat[1, 1:3, 3:5] = 1.0  # "teapot" is hot in a 2 x 2 block of the 4 x 6 latent
    hm = HeatMap(prompt="a teapot", token_spans=a.spans, maps=heat, image_size=(32, 48))
    up = hm.upsampled("teapot")
    assert up.shape == (32, 48) and up.dtype == np.float32
    ref = torch.nn.functional.interpolate(torch.from_numpy(heat[1])[None, None], size=(32, 48), mode="bicubic")
    np.testing.assert_allclose(up, ref[0, 0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(hm.upsampled(heat[1]), up)  # a precomputed map works the same
    mask = hm.mask("teapot", tau=0.4)
    np.testing.assert_array_equal(mask, binary_mask(up, 0.4, "max"))
    assert mask.shape == (32, 48) and mask[12, 32] and not mask[0, 0]
    assert hm.mask("teapot", size=(8, 12)).shape == (8, 12)


def test_save_load_round_trip(tmp_path, embedded_pipe):
    with trace(embedded_pipe, per_step=True) as tracer:
        embedded_pipe("a red teapot, a red cup", num_inference_steps=3, output_type="latent")
    (hm,) = tracer.heat_maps()
    hm = hm.with_params(seed=42)
    path = hm.save(tmp_path / "maps" / "00000001.safetensors")
    loaded = HeatMap.load(path)
    assert loaded.prompt == hm.prompt and loaded.tokens == hm.tokens
    assert loaded.token_spans == hm.token_spans and loaded.image_size == hm.image_size
    assert loaded.params == hm.params and loaded.params["seed"] == 42
    assert loaded.step_indices == hm.step_indices
    np.testing.assert_array_equal(loaded.maps, hm.maps.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(loaded.step_maps, hm.step_maps)
    np.testing.assert_allclose(loaded.word("red", occurrence=1), hm.word("red", occurrence=1), rtol=2e-3)
    # plain safetensors: float16 tensors and JSON metadata, readable without daamset
    with safe_open(str(path), framework="numpy") as f:
        assert f.get_tensor("maps").dtype == np.float16
        meta = json.loads(f.metadata()["daamset.heatmap"])
    assert meta["tokens"] == list(hm.tokens) and meta["params"]["layers"]
    assert not list(tmp_path.glob("maps/.*"))  # no temporary file left behind


def test_load_rejects_foreign_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, dtype=np.float16)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a daamset heat map"):
        HeatMap.load(tmp_path / "other.safetensors")
