"""Diffusers pipelines for the ssmgen models, one file per model family.

Importing this package also makes the pipeline classes visible to
``diffusers.DiffusionPipeline.from_pretrained``, which looks a saved folder's ``_class_name`` up
in the ``diffusers`` namespace: ``import ssmgen.pipelines`` once, then any saved ssmgen pipeline
folder loads through the generic loader (existing diffusers names are never replaced). The
models are imported too, because diffusers only loads components from modules already imported.
"""

import diffusers

import ssmgen.models  # noqa: F401  (component classes diffusers must find when loading a folder)

from .dimsum import DiMSUMPipeline
from .lamamba_diff import LaMambaDiffPipeline
from .motion_mamba import MotionMambaPipeline

PIPELINES = {
    "DiMSUMPipeline": DiMSUMPipeline,
    "LaMambaDiffPipeline": LaMambaDiffPipeline,
    "MotionMambaPipeline": MotionMambaPipeline,
}

for _name, _cls in PIPELINES.items():
    if not hasattr(diffusers, _name):
        setattr(diffusers, _name, _cls)

__all__ = list(PIPELINES)
