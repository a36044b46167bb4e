"""Scan orders for 2-D token grids as cached integer permutation tables.

A scan order over an (height, width) grid of row-major tokens is a permutation ``perm`` of
``range(height * width)``: step ``l`` of the scan visits token ``perm[l]``. Gathering with
``perm`` puts tokens in scan order; gathering with ``inverse`` (``inverse[perm[l]] = l``) puts
them back. Every order the models use reduces to such a table:

- ``row``, ``col``: raster scans (row-major, column-major), and ``*_reverse`` for their flips;
- ``row_snake``, ``col_snake``: continuous boustrophedon scans from the top-left corner;
- ``zigzag``: ZigMa's 8 continuous paths (4 start corners x row- or column-first snakes),
  selected by ``index`` 0..7 in ZigMa's order; LaMamba-Diff's four snakes are zigzag 0, 4, 5, 7;
- ``window``: LocalMamba-style local windows of ``window x window`` tokens, windows visited in
  row-major order and tokens row-major inside each window (``column_first=True`` makes both
  column-major, as DiMSUM's odd layers do);
- ``sweep``: DiMSUM's 8 raster paths (``scanning_orders.sweep_path``): the same 4 start corners
  and row- or column-first order as ``zigzag``, without the snake turns; ``sweep`` 0 and 1 are
  ``row`` and ``col``, 6 and 7 are ``row_reverse`` and ``col_reverse``;
- ``jpeg``: DiMSUM's 8 JPEG zigzag paths (``scanning_orders.jpeg_zigzag``) along the
  anti-diagonals, from the same 4 corners, first stepping along the row (even ``index``) or down
  the column (odd ``index``).

Tables are built once per (name, grid, options) and cached, and moved to a device once per
device.
"""

from functools import lru_cache
from typing import NamedTuple

import torch

SCAN_ORDER_NAMES = (
    "row",
    "row_reverse",
    "col",
    "col_reverse",
    "row_snake",
    "row_snake_reverse",
    "col_snake",
    "col_snake_reverse",
    "zigzag",
    "window",
    "sweep",
    "jpeg",
)
# Orders with 8 corner / direction variants selected by ``index``.
INDEXED_ORDER_NAMES = ("zigzag", "sweep", "jpeg")
# LaMamba-Diff's continuous scans: row snake from the top-left, row snake from the bottom-left
# (moving up), column snake from the bottom-left (moving right), column snake from the
# bottom-right (moving left).
LAMAMBA_SNAKE_ZIGZAG_INDICES = (0, 4, 5, 7)
LAMAMBA_SNAKE_SPECS = tuple(f"zigzag{i}" for i in LAMAMBA_SNAKE_ZIGZAG_INDICES)
# VMamba's cross-scan: rows, columns, and both reversed.
VMAMBA_CROSS_SCAN_SPECS = ("row", "col", "row_reverse", "col_reverse")
# ZigMa's start corners (start_row_is_bottom, start_col_is_right), each with a row-first and a
# column-first snake.
_ZIGZAG_CORNERS = ((False, False), (False, True), (True, False), (True, True))


class ScanOrder(NamedTuple):
    """A permutation ``perm`` (L,) int64 and its inverse (L,) int64."""

    perm: torch.Tensor
    inverse: torch.Tensor


def _snake(height: int, width: int, from_bottom: bool, from_right: bool, row_first: bool) -> list[int]:
    """Boustrophedon path over a row-major grid starting at the given corner."""
    rows = list(range(height))[:: -1 if from_bottom else 1]
    cols = list(range(width))[:: -1 if from_right else 1]
    path = []
    if row_first:
        for i, r in enumerate(rows):
            for c in cols if i % 2 == 0 else cols[::-1]:
                path.append(r * width + c)
    else:
        for j, c in enumerate(cols):
            for r in rows if j % 2 == 0 else rows[::-1]:
                path.append(r * width + c)
    return path


def _from_corner(cells: list[tuple[int, int]], height: int, width: int, corner_index: int) -> list[int]:
    """Row-major token ids of (row, col) cells of a path drawn from the top-left corner, mirrored
    to start at ZigMa's corner ``corner_index`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    from_bottom, from_right = _ZIGZAG_CORNERS[corner_index]
    return [(height - 1 - r if from_bottom else r) * width + (width - 1 - c if from_right else c) for r, c in cells]


def _raster_cells(height: int, width: int, row_first: bool) -> list[tuple[int, int]]:
    if row_first:
        return [(r, c) for r in range(height) for c in range(width)]
    return [(r, c) for c in range(width) for r in range(height)]


def _jpeg_cells(height: int, width: int, row_first: bool) -> list[tuple[int, int]]:
    """JPEG zigzag: anti-diagonal d = row + col in turn, alternating direction; ``row_first`` takes
    the first step to the right (rows decrease along even diagonals), otherwise downwards."""
    cells = []
    for d in range(height + width - 1):
        rows = list(range(max(0, d - width + 1), min(d, height - 1) + 1))
        if (d % 2 == 0) == row_first:
            rows.reverse()
        cells.extend((r, d - r) for r in rows)
    return cells


def _windows(height: int, width: int, window: int, column_first: bool) -> list[int]:
    """Window-major path: windows in raster order, tokens in raster order inside each window."""
    if height % window or width % window:
        raise ValueError(f"window={window} must divide the grid ({height}x{width}); pad the grid first")
    n_rows, n_cols = height // window, width // window
    window_cells = [(wr, wc) for wr in range(n_rows) for wc in range(n_cols)]
    inner_cells = [(i, j) for i in range(window) for j in range(window)]
    if column_first:
        window_cells = [(wr, wc) for wc in range(n_cols) for wr in range(n_rows)]
        inner_cells = [(i, j) for j in range(window) for i in range(window)]
    return [(wr * window + i) * width + (wc * window + j) for wr, wc in window_cells for i, j in inner_cells]


@lru_cache(maxsize=256)
def _build(name: str, height: int, width: int, index: int, window: int, column_first: bool) -> ScanOrder:
    length = height * width
    if name in ("row", "row_reverse"):
        path = list(range(length))
    elif name in ("col", "col_reverse"):
        path = [r * width + c for c in range(width) for r in range(height)]
    elif name in ("row_snake", "row_snake_reverse"):
        path = _snake(height, width, False, False, row_first=True)
    elif name in ("col_snake", "col_snake_reverse"):
        path = _snake(height, width, False, False, row_first=False)
    elif name == "zigzag":
        from_bottom, from_right = _ZIGZAG_CORNERS[index // 2]
        path = _snake(height, width, from_bottom, from_right, row_first=index % 2 == 0)
    elif name == "sweep":
        path = _from_corner(_raster_cells(height, width, index % 2 == 0), height, width, index // 2)
    elif name == "jpeg":
        path = _from_corner(_jpeg_cells(height, width, index % 2 == 0), height, width, index // 2)
    else:  # "window"
        path = _windows(height, width, window, column_first)
    if name.endswith("_reverse"):
        path = path[::-1]
    perm = torch.tensor(path, dtype=torch.long, device="cpu")
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(length, device="cpu")
    return ScanOrder(perm, inverse)


@lru_cache(maxsize=256)
def _on_device(order: ScanOrder, device: torch.device) -> ScanOrder:
    return ScanOrder(order.perm.to(device), order.inverse.to(device))


def scan_order(
    name: str,
    height: int,
    width: int,
    *,
    index: int = 0,
    window: int = 0,
    column_first: bool = False,
    device: torch.device | str | None = None,
) -> ScanOrder:
    """The cached permutation table of one scan order over a (height, width) token grid.

    ``index`` selects one of the 8 ``zigzag``, ``sweep`` or ``jpeg`` paths; ``window`` and
    ``column_first`` configure the local-window order. Returns a :class:`ScanOrder` of (L,) int64 tensors on ``device``.
    """
    if name not in SCAN_ORDER_NAMES:
        raise ValueError(f"name must be one of {SCAN_ORDER_NAMES}, got {name!r}")
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise ValueError(f"height and width must be positive integers, got {height!r} and {width!r}")
    if name in INDEXED_ORDER_NAMES and not (isinstance(index, int) and 0 <= index < 8):
        raise ValueError(f"index must be in 0..7 for the {name} paths, got {index!r}")
    if name == "window" and not (isinstance(window, int) and window > 0):
        raise ValueError(f"window must be a positive integer for the window order, got {window!r}")
    order = _build(name, height, width, index, window, column_first)
    if device is None or torch.device(device) == order.perm.device:
        return order
    return _on_device(order, torch.device(device))


def parse_scan_order_spec(spec: str) -> tuple[str, dict]:
    """A config string -> (name, options) for :func:`scan_order`: a plain name (``row``,
    ``col_snake_reverse``...), ``zigzag{k}``, ``sweep{k}``, ``jpeg{k}`` (k in 0..7), ``window{w}``
    or ``window{w}_col``."""
    for name in INDEXED_ORDER_NAMES:
        suffix = spec.removeprefix(name)
        if suffix != spec and suffix.isdigit() and int(suffix) < 8:
            return name, {"index": int(suffix)}
    if spec.startswith("window"):
        size, _, suffix = spec[6:].partition("_")
        if size.isdigit() and int(size) > 0 and suffix in ("", "col"):
            return "window", {"window": int(size), "column_first": suffix == "col"}
    if spec in SCAN_ORDER_NAMES and spec not in (*INDEXED_ORDER_NAMES, "window"):
        return spec, {}
    raise ValueError(
        f"scan order spec must be one of {SCAN_ORDER_NAMES[:8]}, 'zigzag0'..'zigzag7', 'sweep0'..'sweep7', "
        f"'jpeg0'..'jpeg7', 'window{{w}}' or 'window{{w}}_col', got {spec!r}"
    )


def scan_order_from_spec(spec: str, height: int, width: int, device=None) -> ScanOrder:
    """The scan order named by a config string (see :func:`parse_scan_order_spec`)."""
    name, options = parse_scan_order_spec(spec)
    return scan_order(name, height, width, device=device, **options)


@lru_cache(maxsize=256)
def stack_scan_orders(orders: tuple[ScanOrder, ...]) -> ScanOrder:
    """Stack K orders into cached (K, L) perm and inverse tables (a multi-direction scan's input)."""
    if not orders:
        raise ValueError("orders must hold at least one ScanOrder")
    return ScanOrder(torch.stack([o.perm for o in orders]), torch.stack([o.inverse for o in orders]))
