"""ssmgen: state-space (Mamba) generative models for images and motion.

Submodules are imported lazily so that ``import ssmgen`` stays cheap and never pulls in
optional dependencies (Triton, transformers) before they are needed.
"""

__version__ = "0.1.0"
