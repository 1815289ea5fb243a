"""The mask-quality benchmark's scoring, on a run folder made from clean scene renders.

Heat maps equal to the true masks must score mIoU 1 and AP 1; maps swapped
between objects must score far lower. (The full benchmark, with a trained model
and the dataset run, is ``benchmarks/mask_quality.py``.)
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import coco, contracts, masks
from pipeline.atomic import write_json, write_parquet
from pipeline.clip_tokenizer import clip_tokenizer
from pipeline.daam import HeatMap
from pipeline.daam.tokens import align_prompt
from pipeline.scenes import BACKGROUND, Scene, parse_caption, scene_batch

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("mask_quality", ROOT / "benchmarks" / "mask_quality.py")
mq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mq)


def _heat(scene: Scene, tokenizer, swap: bool) -> HeatMap:  # noqa: ANN001
    """Token maps = the mask of the phrase each token belongs to (others flat)."""
    align = align_prompt(tokenizer, scene.caption)
    phrases = parse_caption(scene.caption)
    groups = [np.zeros(scene.image.shape[:2], np.float32) for _ in phrases]
    for obj in scene.objects:
        groups[obj.group][obj.mask] = 1.0
    if swap:
        groups = groups[1:] + groups[:1]
    maps = np.full((align.n_kept, *scene.image.shape[:2]), 0.5, np.float32)
    for g, phrase in enumerate(phrases):
        spans = [phrase.noun_span, *(s for _, s in phrase.adjectives)]
        spans += [phrase.numeral_span] if phrase.numeral_span else []
        for span in spans:
            for t in align.span_tokens(*span):
                maps[t] = groups[g]
    return HeatMap(scene.caption, align.spans, maps, scene.image.shape[:2])


def _category(phrase) -> str:  # noqa: ANN001
    # a parser may join a colour and its noun into one category ("cyan flower"); the run's name counts
    return " ".join([w for w, _ in phrase.adjectives] + [phrase.noun]) if phrase.noun == "flower" else phrase.noun


def _fake_run(root: Path, scenes: list[Scene], swap: bool) -> contracts.RunDir:
    run = contracts.RunDir(root)
    tok = clip_tokenizer()
    prompts, generated, images, preds, objects = [], [], [], [], []
    names = {i: [_category(p) for p in parse_caption(s.caption)] for i, s in enumerate(scenes)}
    nouns = sorted({n for v in names.values() for n in v})
    cats = coco.category_list(nouns)
    for i, scene in enumerate(scenes):
        for k, phrase in enumerate(parse_caption(scene.caption)):
            start = phrase.adjectives[0][1][0] if " " in names[i][k] else phrase.noun_span[0]
            objects.append({"prompt_id": i, "object_index": k, "text": scene.caption[start : phrase.noun_span[1]],
                            "category": names[i][k], "start_char": start, "end_char": phrase.noun_span[1],
                            "word_start": 0, "word_end": 1})  # fmt: skip
        image_id = i + 1
        run.images.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(run.image_file(image_id))
        _heat(scene, tok, swap).save(run.heatmap_file(image_id))
        prompts.append({"prompt_id": i, "prompt": scene.caption, "source": "t", "source_row": i})
        generated.append({
            "image_id": image_id, "prompt_id": i, "index_in_prompt": 0, "seed": 0,
            "file_name": str(run.image_file(image_id).relative_to(root)),
            "heatmap_file": str(run.heatmap_file(image_id).relative_to(root)), "width": 64, "height": 64,
            "model": "fake", "steps": 1, "guidance_scale": 1.0, "n_prompt_tokens": 5, "truncated": False,
            "worker": "local",
        })  # fmt: skip
        images.append(coco.image_entry(image_id, generated[-1]["file_name"], 64, 64))
        for obj in scene.objects:  # predictions: the true instances, score 1
            preds.append({"image_id": image_id, "category_id": nouns.index(names[i][obj.group]) + 1,
                          "segmentation": masks.encode(obj.mask), "bbox": list(map(float, obj.bbox)), "score": 1.0})  # fmt: skip
    write_parquet(run.prompts, prompts, contracts.PROMPTS)
    write_parquet(run.objects, objects, contracts.OBJECTS)
    write_parquet(run.generate_part(0), generated, contracts.GENERATED)
    write_json(run.instances_json, coco.instances_dataset(images, [], cats))
    write_json(run.predictions_at(0.4), preds)
    return run


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    chosen = [s for s in scene_batch(9, 60, split="test") if len(parse_caption(s.caption)) >= 2][:12]
    assert any(o.noun == "flower" and o.adjectives for s in chosen for o in s.objects)  # the compound case
    return chosen


def test_true_maps_score_perfectly(tmp_path: Path, scenes: list[Scene]) -> None:
    run = _fake_run(tmp_path, scenes, swap=False)
    summary = mq.evaluate_run(run.root, taus=(0.3, 0.4, 0.5))
    assert summary["generation_accuracy"] == 1.0
    assert summary["n_objects_requested"] == sum(len(s.objects) for s in scenes)
    for norm_key in ("noun_miou", "noun_miou_minmax"):
        assert all(v == pytest.approx(1.0) for v in summary[norm_key].values()), summary[norm_key]
    assert summary["segm_AP"]["0.4"] == pytest.approx(1.0) and summary["bbox_AP"]["0.4"] == pytest.approx(1.0)
    assert summary["segm_AP"]["0.3"] is None  # no predictions file at that tau
    expected_baseline = np.mean([s.noun_mask(p.noun).mean() for s in scenes for p in parse_caption(s.caption)])
    assert summary["baseline_miou"]["0.4"] == pytest.approx(expected_baseline)
    assert summary["per_pos"]["ADJ"]["max"]["0.4"] == pytest.approx(1.0) or summary["per_pos"]["ADJ"]["n"] == 0
    saved = json.loads((run.root / "benchmark" / "summary.json").read_text())
    assert saved["noun_miou"] == summary["noun_miou"]
    assert "generation accuracy 1.000" in mq.format_table(summary)


def test_swapped_maps_score_low_and_missing_objects_are_misses(tmp_path: Path, scenes: list[Scene]) -> None:
    summary = mq.evaluate_run(_fake_run(tmp_path / "swap", scenes, swap=True).root)
    assert summary["noun_miou"]["0.4"] < 0.1  # another object's region never overlaps
    empty = np.empty_like(scenes[0].image)
    empty[:] = BACKGROUND  # nothing drawn
    blank = [Scene(s.caption, empty, s.objects, s.relation) for s in scenes[:3]]
    summary = mq.evaluate_run(_fake_run(tmp_path / "blank", blank, swap=False).root)
    assert summary["generation_accuracy"] == 0.0
    assert summary["noun_miou_with_misses"]["0.4"] == 0.0
    assert summary["noun_miou"]["0.4"] is None  # no noun was drawn


def test_small_benchmark_run_is_in_range_of_the_reported_figures(tmp_path: Path) -> None:
    """The shipped model through the real dataset run on a few held-out captions (CPU, ~1 min).

    The reported figures are the full benchmark's (benchmarks/results/mask_quality.json,
    written by ``mask_quality.py --report``); a few captions give the same figures
    within sampling noise, far above the whole-image baseline.
    """
    reported = json.loads((ROOT / "benchmarks" / "results" / "mask_quality.json").read_text())
    out = tmp_path / "bench"
    assert mq.main(["--out", str(out), "--n", "12"]) == 0
    small = json.loads((out / "benchmark" / "summary.json").read_text())
    assert small["n_images"] == 12 and small["n_objects_requested"] >= 20
    assert abs(small["generation_accuracy"] - reported["generation_accuracy"]) <= 0.2
    for tau in ("0.3", "0.4", "0.5"):
        assert abs(small["noun_miou"][tau] - reported["noun_miou"][tau]) <= 0.2, tau
    assert small["noun_miou"]["0.4"] > small["baseline_miou"]["0.4"] + 0.15
    assert small["segm_AP"]["0.4"] is not None and small["bbox_AP"]["0.4"] is not None
