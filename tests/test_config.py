"""Configs are validated at load; errors name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, RunConfig, config_from_dict, load_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.corpus is None or Path(config.corpus).is_absolute()


def test_defaults_are_the_papers() -> None:
    config = load_config()
    assert config.model.id == "embedded"
    assert config.annotate.tau == 0.4 and config.annotate.normalize == "max"
    assert Path(config.corpus).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"generation": {"stpes": 3}}, r"generation\.stpes: unknown key; did you mean 'steps'\?"),
        ({"modle": {}}, r"modle: unknown key; did you mean 'model'\?"),
        ({"generation": {"steps": "many"}}, r"generation\.steps: expected an integer"),
        ({"generation": {"steps": 0}}, r"generation\.steps: 0 is below the minimum 1"),
        ({"annotate": {"tau": 1.5}}, r"annotate\.tau: 1\.5 is above the maximum 1"),
        ({"annotate": {"sweep": [0.3, 2]}}, r"annotate\.sweep\[1\]"),
        ({"annotate": {"normalize": "mean"}}, r"annotate\.normalize: 'mean' is not one of \['max', 'minmax'\]"),
        ({"generation": {"height": 100}}, r"generation\.height: 100 is not a multiple of 8"),
        ({"heatmap": {"first_steps": 2, "last_steps": 3}}, r"at most one of"),
        ({"heatmap": {"step_range": [5, 2]}}, r"heatmap\.step_range"),
        ({"cluster": {"dashboard": "yes"}}, r"cluster\.dashboard: expected true or false"),
        ({"model": "embedded"}, r"model: expected a mapping"),
    ],
)
def test_bad_keys_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_the_file_is_named_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  guidance: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: generation\.guidance: unknown key"):
        load_config(bad)
    good = tmp_path / "sub" / "good.yaml"
    good.parent.mkdir()
    good.write_text("corpus: ../prompts.txt\nextract:\n  vocabulary: vocab.yaml\n")
    config = load_config(good)
    assert config.corpus == str(tmp_path / "prompts.txt")
    assert config.extract.vocabulary == str(tmp_path / "sub" / "vocab.yaml")


def test_not_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
