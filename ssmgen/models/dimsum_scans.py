"""Which token order each DiMSUM layer scans, in its spatial and its wavelet branch.

A ``scan_type`` names the rule (the official ``--bimamba-type`` values in brackets):

* ``"alternating"`` (``none``, the released models): layer i's spatial branch scans rows, rows reversed,
  columns, columns reversed for i % 4 = 0, 1, 2, 3, one unidirectional pass per layer; the wavelet branch
  scans local windows (the token grid cut into 4**levels windows, as ``local_scan(w = grid // 2**levels)``),
  windows and tokens row-major on even layers and column-major on odd ones.
* ``"bidirectional"`` (``v2``): every layer scans rows (spatial) and row-major windows (wavelet), each with
  a Vim-v2 bidirectional Mamba.
* ``"sweep_{k}"``, ``"zigzag_{k}"``, ``"jpeg_{k}"`` (``sweep_k``, ``zigma_k``, ``jpeg_k``; k in 1..8): layer
  i follows path i % k of the family's 8 paths (see :mod:`ssmgen.kernels.scan_orders`). The official code
  applies that path inside the Mamba of *both* branches, so the wavelet branch scans the row-major windows
  in the path's order (window order first, then the path over that sequence).
"""

from functools import lru_cache

import torch

from ssmgen.kernels import ScanOrder, scan_order

PATH_FAMILIES = ("sweep", "zigzag", "jpeg")
_ALTERNATING_SPATIAL = ("row", "row_reverse", "col", "col_reverse")


def check_scan_type(scan_type: str) -> None:
    """Raise ValueError unless ``scan_type`` is one of the rules above."""
    if scan_type in ("alternating", "bidirectional"):
        return
    family, _, count = scan_type.rpartition("_")
    if family in PATH_FAMILIES and count.isdigit() and 1 <= int(count) <= 8:
        return
    raise ValueError(
        "scan_type must be 'alternating', 'bidirectional' or '<family>_<k>' with family in "
        f"{PATH_FAMILIES} and k in 1..8, got {scan_type!r}"
    )


def is_bidirectional(scan_type: str) -> bool:
    return scan_type == "bidirectional"


def _then(first: ScanOrder, second: ScanOrder) -> ScanOrder:
    """Scan the sequence that ``first`` produces in the order ``second``: perm = first.perm[second.perm]."""
    perm = first.perm[second.perm]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return ScanOrder(perm, inverse)


@lru_cache(maxsize=512)
def layer_scan_orders(
    scan_type: str, layer: int, grid: int, levels: int, device: torch.device
) -> tuple[ScanOrder, ScanOrder]:
    """(spatial, wavelet) scan orders of layer ``layer`` over a ``grid x grid`` token grid, on ``device``."""
    check_scan_type(scan_type)
    windows = dict(window=grid // 2**levels)
    if scan_type == "alternating":
        spatial = scan_order(_ALTERNATING_SPATIAL[layer % 4], grid, grid)
        wavelet = scan_order("window", grid, grid, column_first=layer % 2 == 1, **windows)
    elif scan_type == "bidirectional":
        spatial, wavelet = scan_order("row", grid, grid), scan_order("window", grid, grid, **windows)
    else:
        family, _, count = scan_type.rpartition("_")
        spatial = scan_order(family, grid, grid, index=layer % int(count))
        wavelet = _then(scan_order("window", grid, grid, **windows), spatial)
    return (
        ScanOrder(spatial.perm.to(device), spatial.inverse.to(device)),
        ScanOrder(wavelet.perm.to(device), wavelet.inverse.to(device)),
    )
