"""Scan orders are permutations with exact inverses and follow the paths they name."""

import pytest
import torch

from ssmgen.kernels import LAMAMBA_SNAKE_ZIGZAG_INDICES, parse_scan_order_spec, scan_order, stack_scan_orders

ALL_ORDERS = [
    *[dict(name=n) for n in ("row", "row_reverse", "col", "col_reverse")],
    *[dict(name=n) for n in ("row_snake", "row_snake_reverse", "col_snake", "col_snake_reverse")],
    *[dict(name="zigzag", index=i) for i in range(8)],
    *[dict(name="sweep", index=i) for i in range(8)],
    *[dict(name="jpeg", index=i) for i in range(8)],
    dict(name="window", window=2),
    dict(name="window", window=2, column_first=True),
]


def grid_position(token: int, width: int) -> tuple[int, int]:
    return token // width, token % width


@pytest.mark.parametrize("options", ALL_ORDERS, ids=lambda o: "-".join(str(v) for v in o.values()))
@pytest.mark.parametrize("height, width", [(4, 6), (6, 4), (4, 4)])
def test_every_order_is_a_permutation_whose_inverse_restores(options, height, width):
    perm, inverse = scan_order(height=height, width=width, **options)
    L = height * width
    assert torch.equal(perm.sort().values, torch.arange(L))
    tokens = torch.randn(3, L)
    assert torch.equal(tokens[:, perm][:, inverse], tokens)
    assert torch.equal(perm[inverse], torch.arange(L))


@pytest.mark.parametrize("index", range(8))
def test_zigzag_paths_are_continuous(index):
    """Snakes never jump: consecutive tokens are 4-neighbours on the grid."""
    height, width = 5, 6
    perm = scan_order("zigzag", height, width, index=index).perm.tolist()
    for a, b in zip(perm, perm[1:], strict=False):
        (ra, ca), (rb, cb) = grid_position(a, width), grid_position(b, width)
        assert abs(ra - rb) + abs(ca - cb) == 1


def test_zigzag_start_corners_follow_zigma_order():
    height, width = 3, 4
    corners = [grid_position(scan_order("zigzag", height, width, index=i).perm[0].item(), width) for i in range(8)]
    assert corners == [(0, 0), (0, 0), (0, 3), (0, 3), (2, 0), (2, 0), (2, 3), (2, 3)]
    # even indices go along rows first, odd along columns
    assert scan_order("zigzag", height, width, index=0).perm[1].item() == 1
    assert scan_order("zigzag", height, width, index=1).perm[1].item() == width


def test_small_grids_written_out():
    assert scan_order("row_snake", 2, 3).perm.tolist() == [0, 1, 2, 5, 4, 3]
    assert scan_order("col_snake", 2, 3).perm.tolist() == [0, 3, 4, 1, 2, 5]
    assert scan_order("col", 2, 3).perm.tolist() == [0, 3, 1, 4, 2, 5]
    assert scan_order("row_reverse", 2, 3).perm.tolist() == [5, 4, 3, 2, 1, 0]
    assert scan_order("window", 4, 4, window=2).perm.tolist() == [
        0,
        1,
        4,
        5,
        2,
        3,
        6,
        7,
        8,
        9,
        12,
        13,
        10,
        11,
        14,
        15,
    ]
    assert scan_order("window", 4, 4, window=2, column_first=True).perm.tolist() == [
        0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7, 10, 14, 11, 15,
    ]  # fmt: skip


def test_sweep_paths_are_rasters_from_zigmas_corners():
    """DiMSUM's sweep path k: raster from corner k // 2 (ZigMa's corner order), rows first for even k."""
    height, width = 3, 4
    grid = torch.arange(height * width).view(height, width)
    corners = [grid, grid.flip(1), grid.flip(0), grid.flip(0).flip(1)]
    for index in range(8):
        corner = corners[index // 2]
        expected = corner.flatten() if index % 2 == 0 else corner.T.flatten()
        assert torch.equal(scan_order("sweep", height, width, index=index).perm, expected)
    assert torch.equal(scan_order("sweep", 3, 4, index=6).perm, scan_order("row_reverse", 3, 4).perm)
    assert torch.equal(scan_order("sweep", 3, 4, index=7).perm, scan_order("col_reverse", 3, 4).perm)


def test_jpeg_paths_follow_the_jpeg_zigzag():
    # the JPEG standard's 4x4 zigzag (first step to the right), and its transpose for the column-first path
    jpeg_4x4 = [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15]
    assert scan_order("jpeg", 4, 4, index=0).perm.tolist() == jpeg_4x4
    assert scan_order("jpeg", 4, 4, index=1).perm.tolist() == [(t % 4) * 4 + t // 4 for t in jpeg_4x4]
    bottom_right = scan_order("jpeg", 4, 4, index=6).perm.tolist()
    assert bottom_right == [15 - t for t in jpeg_4x4]  # both axes mirrored
    for index in range(8):  # every step moves to one of the 8 neighbours, on rectangles too
        perm = scan_order("jpeg", 3, 5, index=index).perm.tolist()
        for a, b in zip(perm, perm[1:], strict=False):
            (ra, ca), (rb, cb) = grid_position(a, 5), grid_position(b, 5)
            assert max(abs(ra - rb), abs(ca - cb)) == 1


def test_specs_name_the_indexed_orders():
    assert parse_scan_order_spec("sweep3") == ("sweep", {"index": 3})
    assert parse_scan_order_spec("jpeg7") == ("jpeg", {"index": 7})
    assert parse_scan_order_spec("zigzag0") == ("zigzag", {"index": 0})
    for bad in ("sweep8", "jpeg", "sweep_1"):
        with pytest.raises(ValueError, match="spec"):
            parse_scan_order_spec(bad)


def test_lamamba_snakes_pair_up_as_reverses_on_even_grids():
    """On even grids LaMamba-Diff's 4 snakes are a row snake, a column snake and their reverses."""
    n = 4
    rs, rs_up, cs, cs_left = (scan_order("zigzag", n, n, index=i).perm for i in LAMAMBA_SNAKE_ZIGZAG_INDICES)
    assert torch.equal(rs_up, rs.flip(0))
    assert torch.equal(cs_left, cs.flip(0))
    assert rs.tolist()[:5] == [0, 1, 2, 3, 7]
    assert cs.tolist()[:5] == [12, 8, 4, 0, 1]  # bottom-left corner, upward, then right


def test_tables_are_cached_and_stacked():
    a = scan_order("row_snake", 4, 4)
    assert a is scan_order("row_snake", 4, 4)
    stacked = stack_scan_orders((a, scan_order("col", 4, 4)))
    assert stacked.perm.shape == (2, 16) and stacked is stack_scan_orders((a, scan_order("col", 4, 4)))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(name="spiral", height=2, width=2), "name"),
        (dict(name="row", height=0, width=2), "height"),
        (dict(name="zigzag", height=2, width=2, index=8), "index"),
        (dict(name="sweep", height=2, width=2, index=-1), "index"),
        (dict(name="window", height=4, width=4), "window"),
        (dict(name="window", height=4, width=6, window=4), "window=4 must divide"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        scan_order(**kwargs)
