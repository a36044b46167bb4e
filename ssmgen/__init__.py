"""ssmgen: state-space (Mamba) generative models for images and motion.

The models, schedulers and pipelines are exported here lazily (importing ``ssmgen`` stays cheap);
diffusers also resolves saved components such as ``["ssmgen", "LaMambaDiffModel"]`` through these
names when it loads a pipeline folder.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DiMSUMModel": "ssmgen.models",
    "LaMambaDiffModel": "ssmgen.models",
    "MLDDenoiser": "ssmgen.models",
    "MotionMambaModel": "ssmgen.models",
    "MotionVAE": "ssmgen.models",
    "DiMSUMPipeline": "ssmgen.pipelines",
    "LaMambaDiffPipeline": "ssmgen.pipelines",
    "MotionMambaPipeline": "ssmgen.pipelines",
    "FlowMatchingScheduler": "ssmgen.schedulers",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ssmgen' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
