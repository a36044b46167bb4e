"""Selective-scan kernels shared by every ssmgen model.

- :func:`selective_scan`: mamba-ssm's ``selective_scan_fn`` semantics (plus ``initial_state``)
  on the ``reference``, ``torch``, ``triton`` and ``auto`` backends.
- :func:`multi_direction_scan`: K scan orders over the same tokens in one call.
- :func:`scan_order`: cached permutation tables (raster, snakes, zigzag, local windows).
- :func:`causal_conv1d`: the Mamba block's causal depthwise convolution, with streaming state.

Triton is imported only when the ``triton`` backend runs, so this package works without it.
"""

from .causal_conv1d import causal_conv1d
from .multi_direction import multi_direction_scan
from .reference import selective_scan_reference
from .scan_orders import (
    LAMAMBA_SNAKE_SPECS,
    LAMAMBA_SNAKE_ZIGZAG_INDICES,
    SCAN_ORDER_NAMES,
    VMAMBA_CROSS_SCAN_SPECS,
    ScanOrder,
    parse_scan_order_spec,
    scan_order,
    scan_order_from_spec,
    stack_scan_orders,
)
from .selective_scan import BACKENDS, resolve_backend, selective_scan, triton_available

__all__ = [
    "BACKENDS",
    "LAMAMBA_SNAKE_SPECS",
    "LAMAMBA_SNAKE_ZIGZAG_INDICES",
    "SCAN_ORDER_NAMES",
    "VMAMBA_CROSS_SCAN_SPECS",
    "ScanOrder",
    "causal_conv1d",
    "multi_direction_scan",
    "parse_scan_order_spec",
    "resolve_backend",
    "scan_order",
    "scan_order_from_spec",
    "selective_scan",
    "selective_scan_reference",
    "stack_scan_orders",
    "triton_available",
]
