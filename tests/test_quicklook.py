"""`daamset maps`: a few prompts -> image, heat maps, word-map picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.cli import main
from pipeline.daam import HeatMap


def test_maps_command_writes_image_heat_maps_and_picture(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "maps"
    assert main(["maps", "a cat and a dog", "a dog chasing another dog", "--out", str(out), "--steps", "3"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"{i:03d}{suffix}") for i in range(2) for suffix in (".png", ".safetensors", "_words.png")]
    heat_map = HeatMap.load(out / "001.safetensors")
    assert heat_map.prompt == "a dog chasing another dog"
    with Image.open(out / "001.png") as image:
        assert heat_map.image_size == (image.height, image.width)
    assert np.isfinite(heat_map.word("dog", occurrence=1)).all()
    with Image.open(out / "001_words.png") as picture, Image.open(out / "001.png") as image:
        # the image plus one tile per word (5 words): larger than the image in both directions
        assert picture.width > 3 * image.width and picture.height > image.height
