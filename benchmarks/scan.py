"""Selective-scan speed and memory: ssmgen's backends against mamba.py's pscan and the reference.

CPU (always): forward and forward+backward at batch 2, dim 512, N 16, L in {256, 1024, 4096},
ssmgen's ``torch`` backend vs mamba.py's ``pscan`` selective scan (the peer) vs the sequential
reference (at ``--reference-lengths``, 256 and 1024 by default: its autograd backward grows as L^2),
timed side by side in this process (best of ``--repeats``, interleaved; one intra-op thread unless
``--threads``), with the peak resident memory of each run measured in a fresh subprocess. Prints
ratios (peer / ours).

GPU (only when CUDA is present): the ``triton`` backend vs the ``torch`` backend in bfloat16,
and the Triton forward's achieved bandwidth against the roofline bound of
``reference/kernels.md`` section 5.2 (bytes moved / copy bandwidth measured here, or the exp
throughput bound, whichever is larger).

Usage:  python benchmarks/scan.py [--lengths 256 1024 4096] [--repeats 3] [--threads 1] [--json results.json]
"""

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from ssmgen.kernels import selective_scan

BATCH, DIM, D_STATE = 2, 512, 16
IMPLEMENTATIONS = ("ssmgen-torch", "mambapy-pscan", "reference")


def make_inputs(length: int, device: str = "cpu", dtype: torch.dtype = torch.float32, batch=BATCH, dim=DIM):
    """u, delta (raw, softplus applied by the scan), A, B, C, D as in a Mamba layer."""
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    return {
        "u": randn(batch, dim, length).to(dtype),
        "delta": (randn(batch, dim, length) - 2.0).to(dtype),
        "A": -torch.arange(1, D_STATE + 1, dtype=torch.float32, device=device).repeat(dim, 1),
        "B": randn(batch, D_STATE, length).to(dtype),
        "C": randn(batch, D_STATE, length).to(dtype),
        "D": torch.ones(dim, device=device),
    }


def run_scan(name: str, inputs: dict, backward: bool) -> None:
    """One forward (and backward) of implementation ``name``; the loss is out.sum()."""
    leaves = {k: v.detach().clone().requires_grad_(backward) for k, v in inputs.items()}
    with torch.set_grad_enabled(backward):
        if name == "mambapy-pscan":
            from mambapy.mamba import MambaBlock

            t = {k: v.transpose(1, 2) for k, v in leaves.items() if k in ("u", "delta", "B", "C")}
            # mamba.py takes delta after the softplus and tokens last-but-one: (B, L, ED), (B, L, N).
            out = MambaBlock.selective_scan(
                None, t["u"], F.softplus(t["delta"]), leaves["A"], t["B"], t["C"], leaves["D"]
            )
        else:
            backend = {"ssmgen-torch": "torch", "ssmgen-triton": "triton", "reference": "reference"}[name]
            out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        if backward:
            out.float().sum().backward()
    if inputs["u"].is_cuda:
        torch.cuda.synchronize()


def time_side_by_side(names, inputs, backward, repeats) -> dict[str, float]:
    """Best-of-``repeats`` seconds per implementation, runs interleaved so load affects all alike."""
    best = {name: float("inf") for name in names}
    for name in names:  # warm-up
        run_scan(name, inputs, backward)
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            run_scan(name, inputs, backward)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def measure_peak_memory_here(name: str, length: int, backward: bool) -> float:
    """Peak resident memory (MiB) added by one run, in this (fresh) process."""
    inputs = make_inputs(length)
    run_scan(name, make_inputs(min(length, 64)), backward)  # load code paths first
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS watermark (Linux)
    before = _resident_kib("VmRSS:")
    run_scan(name, inputs, backward)
    return (_resident_kib("VmHWM:") - before) / 1024


def measure_peak_memory(name: str, length: int, backward: bool) -> float:
    """Run :func:`measure_peak_memory_here` in a subprocess so earlier runs cannot hide a peak."""
    args = [sys.executable, __file__, "--threads", str(torch.get_num_threads())]
    args += ["--memory-probe", name, str(length), str(int(backward))]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def cpu_benchmark(lengths, repeats, reference_lengths) -> list[dict]:
    """ours vs pscan at every length; the reference only at ``reference_lengths`` (its autograd backward
    allocates a full-size gradient for every step's slice, so its cost grows with L squared)."""
    rows = []
    print(f"CPU, {torch.get_num_threads()} threads: batch {BATCH}, dim {DIM}, N {D_STATE}, float32")
    header = (
        f"{'L':>6} {'pass':<8} {'ours ms':>9} {'pscan ms':>9} {'ref ms':>9} {'pscan/ours':>10} {'ref/ours':>9}"
        f" {'ours MiB':>9} {'pscan MiB':>9} {'ref MiB':>8}"
    )
    print(header)
    for length in lengths:
        inputs = make_inputs(length)
        for backward in (False, True):
            names = IMPLEMENTATIONS if length in reference_lengths else IMPLEMENTATIONS[:2]
            reps = {name: repeats for name in names}
            seconds = time_side_by_side(names[:2], inputs, backward, repeats)
            if "reference" in names:
                seconds |= time_side_by_side(names[2:], inputs, backward, 1)  # the slow oracle: once
                reps["reference"] = 1
            memory = {name: measure_peak_memory(name, length, backward) for name in names}
            row = {
                "device": "cpu",
                "batch": BATCH,
                "dim": DIM,
                "d_state": D_STATE,
                "length": length,
                "pass": "fwd+bwd" if backward else "fwd",
                "ms": {k: round(v * 1e3, 2) for k, v in seconds.items()},
                "peak_mib": {k: round(v, 1) for k, v in memory.items()},
                "speedup_vs_pscan": round(seconds["mambapy-pscan"] / seconds["ssmgen-torch"], 2),
                "speedup_vs_reference": (
                    round(seconds["reference"] / seconds["ssmgen-torch"], 2) if "reference" in seconds else None
                ),
                "repeats": reps,
            }
            rows.append(row)
            ms, mib, vs_ref = row["ms"], row["peak_mib"], row["speedup_vs_reference"]
            print(
                f"{length:>6} {row['pass']:<8} {ms['ssmgen-torch']:>9.1f} {ms['mambapy-pscan']:>9.1f}"
                f" {ms.get('reference', float('nan')):>9.1f} {row['speedup_vs_pscan']:>9.2f}x"
                f" {vs_ref or float('nan'):>8.2f}x {mib['ssmgen-torch']:>9.1f} {mib['mambapy-pscan']:>9.1f}"
                f" {mib.get('reference', float('nan')):>8.1f}",
                flush=True,
            )
    return rows


def gpu_agreement() -> dict:
    """Before timing: the Triton kernels against the torch backend on CUDA (float32, outputs and all
    gradients, several chunks of the Triton recompute, grouped B/C, z, initial state; and a
    4-direction scan read through its tables)."""
    from ssmgen.kernels import multi_direction_scan, scan_order_from_spec, stack_scan_orders

    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).cuda()

    batch, dim, N, L, G = 2, 256, 16, 1000, 2
    plain = {
        "u": randn(batch, dim, L), "delta": randn(batch, dim, L) - 1,
        "A": -torch.rand(dim, N, generator=gen).cuda() - 0.1, "B": randn(batch, G, N, L),
        "C": randn(batch, G, N, L), "D": randn(dim), "z": randn(batch, dim, L),
        "delta_bias": randn(dim) * 0.1, "initial_state": randn(batch, dim, N),
    }  # fmt: skip
    orders = stack_scan_orders(
        tuple(scan_order_from_spec(s, 24, 32, "cuda") for s in ("row", "col", "zigzag4", "window8"))
    )
    K, E = 4, 64
    multi = {
        "u": randn(batch, E, 768), "delta": randn(batch, K * E, 768) - 1,
        "A": -torch.rand(K * E, N, generator=gen).cuda(), "B": randn(batch, K, N, 768),
        "C": randn(batch, K, N, 768), "D": randn(K * E), "delta_bias": randn(K * E) * 0.1,
    }  # fmt: skip
    worst = {}
    for name, inputs, call in (
        ("selective_scan", plain, lambda b, **a: selective_scan(**a, delta_softplus=True, backend=b)),
        ("multi_direction_scan", multi, lambda b, **a: multi_direction_scan(**a, orders=orders, backend=b)),
    ):
        results = {}
        for backend in ("torch", "triton"):
            leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
            out = call(backend, **leaves)
            (out * torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)).sum().backward()
            results[backend] = [out.detach()] + [leaves[k].grad for k in inputs]
        worst[name] = max(
            ((a - b).abs().max() / b.abs().max().clamp(min=1e-6)).item() for a, b in zip(*results.values(), strict=True)
        )
    print("triton vs torch on CUDA, worst relative difference (output and every gradient):", worst)
    return worst


def gpu_benchmark(lengths, repeats) -> list[dict]:
    """Triton vs torch backend on CUDA in bfloat16, and the Triton forward's roofline fraction."""
    agreement = gpu_agreement()
    batch, dim = 8, 3072
    big = torch.empty(2**28, dtype=torch.uint8, device="cuda")
    copy_s = min(_cuda_time(lambda: big.clone()) for _ in range(5))
    bandwidth = 2 * big.numel() / copy_s  # bytes read + written per second by a device copy
    exp_rate = 16 * torch.cuda.get_device_properties(0).multi_processor_count * 1.98e9  # MUFU ex2/s [calc]
    print(f"\nGPU {torch.cuda.get_device_name()}: batch {batch}, dim {dim}, N {D_STATE}, bfloat16")
    print(f"measured copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    rows = []
    for length in lengths:
        inputs = make_inputs(length, "cuda", torch.bfloat16, batch=batch, dim=dim)
        for backward in (False, True):
            t = {
                name: min(_cuda_time(lambda n=name, i=inputs, b=backward: run_scan(n, i, b)) for _ in range(repeats))
                for name in ("ssmgen-triton", "ssmgen-torch")
            }
            elements = batch * dim * length
            bound = max(6 * elements / bandwidth, D_STATE * elements / exp_rate)  # u, delta, out in bf16
            row = {
                "device": torch.cuda.get_device_name(),
                "length": length,
                "pass": "fwd+bwd" if backward else "fwd",
                "ms": {k: round(v * 1e3, 3) for k, v in t.items()},
                "speedup_triton_vs_torch": round(t["ssmgen-torch"] / t["ssmgen-triton"], 2),
            }
            if not backward:
                row["roofline_fraction"] = round(bound / t["ssmgen-triton"], 3)
                row["bound_ms"] = round(bound * 1e3, 3)
            row["triton_vs_torch_worst_relative_difference"] = agreement
            rows.append(row)
            print(json.dumps(row))
    return rows


def _cuda_time(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-lengths", type=int, nargs="*", default=[256, 1024], help="lengths to time it at")
    parser.add_argument("--json", help="write the result rows to this file")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU section")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU intra-op threads for all three (1: fastest for small ops)"
    )
    parser.add_argument("--memory-probe", nargs=3, metavar=("IMPL", "L", "BACKWARD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        name, length, backward = args.memory_probe
        print(measure_peak_memory_here(name, int(length), bool(int(backward))))
        return
    rows = [] if args.gpu_only else cpu_benchmark(args.lengths, args.repeats, args.reference_lengths)
    if torch.cuda.is_available():
        rows += gpu_benchmark(args.lengths, args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
