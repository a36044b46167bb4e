"""Image denoisers against DiT: parameters, GFLOPs, and how CPU time grows with the token count.

1. Parameters and GFLOPs of one forward pass (batch 1, 4-channel latents) at 256px (32x32 latent)
   and 512px (64x64), ours next to diffusers' ``DiTTransformer2DModel`` of the paired size. GFLOPs
   follow the DiT/fvcore convention (one multiply-add = one FLOP; torch's FlopCounterMode counts
   two, so its count is halved) and add the selective scans at 9 B L D N each, the count VMamba's
   fvcore hook uses. Models are built on the meta device, so no weights are allocated.
2. CPU forward time of each family's smallest pair as the latent side doubles twice (4x and 16x
   the tokens), reported as growth relative to linear for ours and for DiT.

Usage:  python benchmarks/image_models.py [--timing-sizes 16 32 64] [--repeats 3] [--json out.json]
"""

import argparse
import json
import time
from contextlib import contextmanager

import torch
from diffusers import DiTTransformer2DModel
from torch.utils.flop_counter import FlopCounterMode

from ssmgen.kernels.chunked_scan import ChunkedSelectiveScan
from ssmgen.models import DiMSUMModel, LaMambaDiffModel

# DiT sizes (Peebles & Xie, table 1): layers, heads, head dim 64 (72 for XL), patch 2.
DIT_SIZES = {
    "S/2": dict(num_layers=12, num_attention_heads=6, attention_head_dim=64),
    "B/2": dict(num_layers=12, num_attention_heads=12, attention_head_dim=64),
    "L/2": dict(num_layers=24, num_attention_heads=16, attention_head_dim=64),
    "XL/2": dict(num_layers=28, num_attention_heads=16, attention_head_dim=72),
}
# (our model, its preset, the DiT size it is compared with)
PAIRS = [
    ("LaMamba-Diff", "S", "S/2"),
    ("LaMamba-Diff", "B", "B/2"),
    ("LaMamba-Diff", "L", "L/2"),
    ("LaMamba-Diff", "XL", "XL/2"),
    # DiMSUM's paper compares its L/2 with DiT-L/2 (84.49 vs 80.74 GFLOPs at 256px, 337.48 vs 361.14 at 512px)
    ("DiMSUM", "B/2", "B/2"),
    ("DiMSUM", "L/2", "L/2"),
    ("DiMSUM", "XL/2", "XL/2"),
]
OUR_MODELS = {"LaMamba-Diff": LaMambaDiffModel, "DiMSUM": DiMSUMModel}


def build_ours(family: str, preset: str, latent: int):
    return OUR_MODELS[family].from_preset(preset, sample_size=latent, in_channels=4, num_classes=1000)


def build_dit(size: str, latent: int) -> DiTTransformer2DModel:
    return DiTTransformer2DModel(
        in_channels=4, out_channels=8, sample_size=latent, patch_size=2, num_embeds_ada_norm=1000, **DIT_SIZES[size]
    )


@contextmanager
def count_scan_flops():
    """Count 9 B L D N for every selective scan of the torch backend run inside the block."""
    total = [0]
    original = ChunkedSelectiveScan.apply

    def counted(u, delta, A, *args):
        batch, dim, length = delta.shape
        total[0] += 9 * batch * length * dim * A.shape[1]
        return original(u, delta, A, *args)

    ChunkedSelectiveScan.apply = counted
    try:
        yield total
    finally:
        ChunkedSelectiveScan.apply = original


def forward_gflops(model, latent: int) -> float:
    """GFLOPs (multiply-add = 1) of one batch-1 forward on the meta device, scans included."""
    x = torch.randn(1, 4, latent, latent, device="meta")
    t, y = torch.zeros(1, dtype=torch.long, device="meta"), torch.zeros(1, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, count_scan_flops() as scans:
        model(x, timestep=t, class_labels=y)
    return (counter.get_total_flops() / 2 + scans[0]) / 1e9


def size_table() -> list[dict]:
    rows = []
    print(f"{'model':<20} {'peer':<10} {'res':>4} {'params M':>9} {'peer M':>8} {'GFLOPs':>8} {'peer':>8} {'ratio':>6}")
    for family, preset, dit_size in PAIRS:
        for resolution in (256, 512):
            latent = resolution // 8
            with torch.device("meta"):
                ours, dit = build_ours(family, preset, latent), build_dit(dit_size, latent)
            row = {
                "model": f"{family}-{preset}",
                "peer": f"DiT-{dit_size}",
                "resolution": resolution,
                "params_m": round(sum(p.numel() for p in ours.parameters()) / 1e6, 1),
                "peer_params_m": round(sum(p.numel() for p in dit.parameters()) / 1e6, 1),
                "gflops": round(forward_gflops(ours, latent), 2),
                "peer_gflops": round(forward_gflops(dit, latent), 2),
            }
            row["gflops_ratio"] = round(row["gflops"] / row["peer_gflops"], 3)
            rows.append(row)
            print(
                f"{row['model']:<20} {row['peer']:<10} {resolution:>4} {row['params_m']:>9.1f}"
                f" {row['peer_params_m']:>8.1f} {row['gflops']:>8.2f} {row['peer_gflops']:>8.2f}"
                f" {row['gflops_ratio']:>6.3f}",
                flush=True,
            )
    return rows


def forward_seconds(model, latent: int, repeats: int) -> float:
    x = torch.randn(1, 4, latent, latent)
    t, y = torch.tensor([500]), torch.tensor([1])
    with torch.no_grad():
        model(x, timestep=t, class_labels=y)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(x, timestep=t, class_labels=y)
            best = min(best, time.perf_counter() - start)
    return best


def growth_table(pair: tuple[str, str, str], sizes: list[int], repeats: int) -> list[dict]:
    """Time of one pair at each latent side; growth = t(n) / t(first) / (tokens ratio)."""
    family, preset, dit_size = pair
    torch.manual_seed(0)
    ours, dit = build_ours(family, preset, sizes[0]).eval(), build_dit(dit_size, sizes[0]).eval()
    rows, base = [], None
    print(f"\nCPU forward, batch 1, {family}-{preset} vs DiT-{dit_size} ({torch.get_num_threads()} threads)")
    print(f"{'latent':>6} {'tokens x':>8} {'ours s':>8} {'DiT s':>8} {'ours vs linear':>15} {'DiT vs linear':>14}")
    for latent in sizes:
        if latent != sizes[0]:  # DiT's position embedding is fixed to its sample size
            dit = build_dit(dit_size, latent).eval()
        seconds = (forward_seconds(ours, latent, repeats), forward_seconds(dit, latent, repeats))
        base = base or seconds
        tokens = (latent / sizes[0]) ** 2
        row = {
            "model": f"{family}-{preset}",
            "latent": latent,
            "tokens_ratio": tokens,
            "ours_s": round(seconds[0], 4),
            "dit_s": round(seconds[1], 4),
            "ours_growth_vs_linear": round(seconds[0] / base[0] / tokens, 3),
            "dit_growth_vs_linear": round(seconds[1] / base[1] / tokens, 3),
        }
        rows.append(row)
        print(
            f"{latent:>6} {tokens:>8.0f} {row['ours_s']:>8.3f} {row['dit_s']:>8.3f}"
            f" {row['ours_growth_vs_linear']:>14.2f}x {row['dit_growth_vs_linear']:>13.2f}x",
            flush=True,
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", help="write the result rows to this file")
    args = parser.parse_args(argv)
    result = {"sizes": size_table()}
    if not args.skip_timing:
        smallest = [next(pair for pair in PAIRS if pair[0] == family) for family in OUR_MODELS]
        result["growth"] = [row for pair in smallest for row in growth_table(pair, args.timing_sizes, args.repeats)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
