"""daamset's building blocks: configuration, model loading, attention capture
(``pipeline.daam``), masks and COCO, Label Studio, metrics, and the Dask workflow.

The library parts never import ``stages``; only ``pipeline.workflow`` and
``pipeline.cli`` (the composition root) do.
"""

__version__ = "0.1.0"

import logging as _logging


class _NoTorchvisionNotice(_logging.Filter):
    """Drop transformers' notice that torchvision is missing.

    diffusers imports CLIP/SigLIP image processors that daamset never uses, and
    torchvision is left out on purpose (its PyPI build does not import beside the
    CPU torch); without this, every process (each Dask worker too) prints it.
    """

    def filter(self, record: _logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionNotice())
