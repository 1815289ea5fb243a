"""The data contract of a dataset run: every file a stage writes, and its schema.

This module is the one place that says what lives in a run folder. Stages read
their inputs and write their outputs only through the paths and schemas here,
so a stage can be rerun, resumed or replaced without reading another stage's
code. Data flows one way:

    extract  -> extract/{prompts,words,objects,skipped}.parquet
    generate -> images/*.png, heatmaps/*.safetensors, generate/part-NNNNN.parquet
    annotate -> annotate/instances-NNNNN.parquet, annotate/words-NNNNN.parquet
    export   -> coco/*.json, stats/*.parquet, previews/*.png
    review   -> review/{project.json,tasks.parquet} (push), review/{ground_truth.json,status.parquet} (pull)
    evaluate -> eval/summary.json, eval/per_category.parquet, eval/*.png

Partitioned stages (generate, annotate) work on fixed slices of prompts:
partition ``p`` holds the prompts with ``prompt_id // partition_size == p``. A
partition's Parquet file is written last and atomically (write, then rename),
so its presence means the partition is complete and a rerun skips it.

Identifiers are deterministic, so a resumed or re-run dataset is identical:
- ``prompt_id``: position of the prompt among accepted prompts, in corpus order.
- ``image_id``: ``prompt_id * images_per_prompt + index_in_prompt + 1``.
- category ids: 1.. in vocabulary order (fixed vocabulary) or sorted by name (open).
- annotation ids: 1.. in (image_id, object_index, instance_index) order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

__all__ = [
    "PROMPTS",
    "WORDS",
    "OBJECTS",
    "SKIPPED",
    "GENERATED",
    "INSTANCES",
    "WORD_STATS",
    "IMAGE_STATS",
    "CATEGORY_STATS",
    "REVIEW_TASKS",
    "REVIEW_STATUS",
    "PER_CATEGORY",
    "RunDir",
    "image_id_for",
]

# extract/prompts.parquet: one row per accepted prompt.
PROMPTS = pa.schema(
    [
        ("prompt_id", pa.int64()),
        ("prompt", pa.string()),
        ("source", pa.string()),  # corpus file name
        ("source_row", pa.int64()),  # line / row number in the corpus (0-based)
        ("coco_image_id", pa.int64()),  # COCO captions input only, else null
        ("coco_caption_id", pa.int64()),  # COCO captions input only, else null
    ]
)

# extract/words.parquet: one row per spaCy token of every accepted prompt.
WORDS = pa.schema(
    [
        ("prompt_id", pa.int64()),
        ("word_index", pa.int32()),  # spaCy token index in the prompt
        ("text", pa.string()),
        ("lemma", pa.string()),
        ("pos", pa.string()),  # universal POS (NOUN, ADJ, ...)
        ("tag", pa.string()),  # fine-grained tag (NN, NNS, ...)
        ("dep", pa.string()),  # dependency relation to the head
        ("head", pa.int32()),  # word_index of the syntactic head
        ("start_char", pa.int32()),  # character span in the prompt
        ("end_char", pa.int32()),
        ("object_index", pa.int32()),  # the object this token belongs to, else null
    ]
)

# extract/objects.parquet: one row per object (noun phrase head, compounds joined).
OBJECTS = pa.schema(
    [
        ("prompt_id", pa.int64()),
        ("object_index", pa.int32()),  # 0.. within the prompt, in text order
        ("text", pa.string()),  # surface form, e.g. "hot dogs"
        ("category", pa.string()),  # lemma or vocabulary class, e.g. "hot dog"
        ("start_char", pa.int32()),  # character span of the whole (compound) noun
        ("end_char", pa.int32()),
        ("word_start", pa.int32()),  # spaCy token span [word_start, word_end)
        ("word_end", pa.int32()),
    ]
)

# */skipped*.parquet and stats/skipped.parquet: every input or item not used, and why.
SKIPPED = pa.schema(
    [
        ("stage", pa.string()),
        ("source", pa.string()),
        ("source_row", pa.int64()),
        ("prompt_id", pa.int64()),
        ("image_id", pa.int64()),
        ("input", pa.string()),  # the offending text (prompt or word), decoded with replacement
        ("reason", pa.string()),
    ]
)

# generate/part-NNNNN.parquet: one row per generated image.
GENERATED = pa.schema(
    [
        ("image_id", pa.int64()),
        ("prompt_id", pa.int64()),
        ("index_in_prompt", pa.int32()),
        ("seed", pa.int64()),
        ("file_name", pa.string()),  # relative to the run folder: images/NNNNNNNN.png
        ("heatmap_file", pa.string()),  # relative: heatmaps/NNNNNNNN.safetensors
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("model", pa.string()),
        ("steps", pa.int32()),
        ("guidance_scale", pa.float32()),
        ("n_prompt_tokens", pa.int32()),  # tokens the prompt needed (may exceed the limit)
        ("truncated", pa.bool_()),  # prompt longer than the text encoder's limit
        ("worker", pa.string()),  # Dask worker address (or "local") that generated it
    ]
)

# annotate/instances-NNNNN.parquet: one row per instance per tau.
INSTANCES = pa.schema(
    [
        ("image_id", pa.int64()),
        ("prompt_id", pa.int64()),
        ("object_index", pa.int32()),
        ("category", pa.string()),
        ("text", pa.string()),
        ("tau", pa.float32()),
        ("normalize", pa.string()),  # "max" (Eq. 7) or "minmax" (anchor's code)
        ("instance_index", pa.int32()),  # 0.. by descending area within (object, tau)
        ("rle_counts", pa.string()),  # COCO compressed RLE of the instance mask
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("bbox", pa.list_(pa.float32(), 4)),  # [x, y, w, h]
        ("area", pa.float32()),
        ("score", pa.float32()),  # mean normalised heat inside the instance
        ("polygons", pa.list_(pa.list_(pa.float32()))),  # COCO polygons [[x1,y1,x2,y2,...], ...]
    ]
)

# annotate/words-NNNNN.parquet: one row per word (every POS) per image per tau.
WORD_STATS = pa.schema(
    [
        ("image_id", pa.int64()),
        ("prompt_id", pa.int64()),
        ("word_index", pa.int32()),
        ("text", pa.string()),
        ("lemma", pa.string()),
        ("pos", pa.string()),
        ("tag", pa.string()),
        ("dep", pa.string()),
        ("object_index", pa.int32()),
        ("tau", pa.float32()),
        ("normalize", pa.string()),
        ("coverage", pa.float32()),  # share of the image inside the tau mask
        ("heat_mean", pa.float32()),  # raw DAAM map statistics at image size
        ("heat_max", pa.float32()),
        ("heat_min", pa.float32()),
        ("heat_std", pa.float32()),
    ]
)


# stats/images.parquet: one row per generated image.
IMAGE_STATS = pa.schema(
    [
        ("image_id", pa.int64()),
        ("prompt_id", pa.int64()),
        ("prompt", pa.string()),
        ("file_name", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("seed", pa.int64()),
        ("truncated", pa.bool_()),
        ("n_objects", pa.int32()),
        ("n_instances", pa.int32()),
    ]
)

# stats/categories.parquet: one row per category (at the main tau).
CATEGORY_STATS = pa.schema(
    [
        ("category_id", pa.int64()),
        ("category", pa.string()),
        ("n_mentions", pa.int64()),
        ("n_images", pa.int64()),
        ("n_instances", pa.int64()),
        ("mean_area", pa.float64()),
        ("mean_score", pa.float64()),
        ("mean_coverage", pa.float64()),
    ]
)

# review/tasks.parquet: the run's tasks in its Label Studio project (written by push)
REVIEW_TASKS = pa.schema(
    [
        ("image_id", pa.int64()),
        ("task_id", pa.int64()),
        ("project_id", pa.int64()),
    ]
)

# review/status.parquet: what became of each task (written by pull)
REVIEW_STATUS = pa.schema(
    [
        ("image_id", pa.int64()),
        ("task_id", pa.int64()),
        ("status", pa.string()),  # annotated | skipped | unannotated
        ("annotation_id", pa.int64()),  # the annotation used (annotated only)
        ("annotator", pa.string()),
        ("annotated_at", pa.string()),  # ISO 8601, as the server reports it
        ("lead_time", pa.float64()),  # seconds the annotator spent, as the server reports it
        ("n_annotations", pa.int32()),  # all annotations of the task, cancelled included
        ("n_instances", pa.int32()),  # instances written to ground_truth.json
        ("notes", pa.string()),  # regions dropped and why, or null
    ]
)

# eval/per_category.parquet
PER_CATEGORY = pa.schema(
    [
        ("tau", pa.float64()),
        ("category_id", pa.int64()),
        ("category", pa.string()),
        ("segm_AP", pa.float64()),  # null: no ground truth of this category in the reviewed images
        ("segm_AP50", pa.float64()),
        ("segm_AP75", pa.float64()),
        ("bbox_AP", pa.float64()),
        ("bbox_AP50", pa.float64()),
        ("bbox_AP75", pa.float64()),
        ("miou", pa.float64()),  # null: no (image, category) pair in the ground truth
        ("n_gt", pa.int64()),
        ("n_pred", pa.int64()),
    ]
)


def image_id_for(prompt_id: int, index_in_prompt: int, images_per_prompt: int) -> int:
    """The image id of the ``index_in_prompt``-th image of prompt ``prompt_id``."""
    return int(prompt_id) * int(images_per_prompt) + int(index_in_prompt) + 1


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder. Creating it touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # the resolved configuration of the run
    @property
    def config(self) -> Path:
        return self.root / "run.yaml"

    # extract
    @property
    def extract(self) -> Path:
        return self.root / "extract"

    @property
    def prompts(self) -> Path:
        return self.extract / "prompts.parquet"

    @property
    def words(self) -> Path:
        return self.extract / "words.parquet"

    @property
    def objects(self) -> Path:
        return self.extract / "objects.parquet"

    @property
    def extract_skipped(self) -> Path:
        return self.extract / "skipped.parquet"

    # generate
    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def heatmaps(self) -> Path:
        return self.root / "heatmaps"

    @property
    def generate(self) -> Path:
        return self.root / "generate"

    def image_file(self, image_id: int) -> Path:
        return self.images / f"{image_id:08d}.png"

    def heatmap_file(self, image_id: int) -> Path:
        return self.heatmaps / f"{image_id:08d}.safetensors"

    def generate_part(self, partition: int) -> Path:
        return self.generate / f"part-{partition:05d}.parquet"

    def generate_skipped(self, partition: int) -> Path:
        return self.generate / f"skipped-{partition:05d}.parquet"

    # annotate
    @property
    def annotate(self) -> Path:
        return self.root / "annotate"

    def instances_part(self, partition: int) -> Path:
        return self.annotate / f"instances-{partition:05d}.parquet"

    def word_stats_part(self, partition: int) -> Path:
        return self.annotate / f"words-{partition:05d}.parquet"

    def annotate_skipped(self, partition: int) -> Path:
        return self.annotate / f"skipped-{partition:05d}.parquet"

    # export
    @property
    def coco(self) -> Path:
        return self.root / "coco"

    @property
    def instances_json(self) -> Path:
        return self.coco / "instances.json"

    @property
    def captions_json(self) -> Path:
        return self.coco / "captions.json"

    @property
    def predictions_json(self) -> Path:
        """Predictions at the run's main tau (the one instances.json uses)."""
        return self.coco / "predictions.json"

    def predictions_at(self, tau: float) -> Path:
        """Predictions of one tau of the sweep."""
        return self.coco / f"predictions_tau{tau:g}.json"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    @property
    def skipped(self) -> Path:
        return self.stats / "skipped.parquet"

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    # review and evaluate
    @property
    def review(self) -> Path:
        return self.root / "review"

    @property
    def ground_truth_json(self) -> Path:
        return self.review / "ground_truth.json"

    @property
    def review_project(self) -> Path:
        """The Label Studio project of the run (id, title, server URL; never the key)."""
        return self.review / "project.json"

    @property
    def review_tasks(self) -> Path:
        return self.review / "tasks.parquet"

    @property
    def review_status(self) -> Path:
        return self.review / "status.parquet"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def eval_summary(self) -> Path:
        return self.eval / "summary.json"

    @property
    def eval_per_category(self) -> Path:
        return self.eval / "per_category.parquet"

    @property
    def eval_plot(self) -> Path:
        return self.eval / "ap_vs_tau.png"
