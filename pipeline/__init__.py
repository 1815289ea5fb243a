"""daamset's building blocks: configuration, model loading, attention capture
(``pipeline.daam``), masks and COCO, Label Studio, metrics, and the Dask workflow.

The library parts never import ``stages``; only ``pipeline.workflow`` and
``pipeline.cli`` (the composition root) do.
"""

__version__ = "0.1.0"
