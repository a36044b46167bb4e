"""Motion Mamba against MLD: sampling time per sentence, and frame-mode time against motion length.

1. AITS (average inference time per sentence, the paper's Fig. 4: Motion Mamba 0.058 s vs MLD 0.217 s on a
   V100): the whole MotionMambaPipeline (encode text, 50 DDIM steps with classifier-free guidance, decode with
   the VAE) for MotionMambaModel (``paper-n11`` and ``paper-total11``) and MLDDenoiser at the same 2 x 256
   latent and width 256, with the same VAE (``paper`` preset) and the same text encoder. The text encoder is
   a randomly initialised one-layer BERT of width 768 standing in for CLIP ViT-L/14 (nothing is downloaded);
   all models share it, so it shifts every time alike. Seconds per sentence = seconds per batch / batch size,
   best of ``--repeats``, models interleaved so machine load affects all alike. Weights are random: speed
   does not depend on them.
2. Frame mode: seconds per guided denoising step (batch 2: the empty prompt and the prompt) of a frame-mode
   MotionMambaModel at 200, 1,000 and 4,000 frames; growth = (t(n) / t(200)) / (n / 200), target <= 1.2
   (1.0 is exactly linear).

Usage:
    python benchmarks/motion.py [--device cpu|cuda] [--batch-sizes 1 32] [--steps 50] [--repeats 3]
        [--frame-lengths 200 1000 4000] [--frame-preset frame] [--frame-overrides hidden_size=64 num_blocks=2]
        [--threads N] [--skip-aits] [--skip-frames] [--json results.json]
"""

import argparse
import json
import platform
import time

import torch
from transformers import BertConfig, BertModel, BertTokenizer

from ssmgen.models import MLDDenoiser, MotionMambaModel, MotionVAE
from ssmgen.pipelines import MotionMambaPipeline
from ssmgen.pipelines.motion_mamba import mld_ddim_scheduler

PROMPT = "a person walks forward and waves"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *PROMPT.split()]


def stand_in_text_encoder(width: int = 768):
    """A one-layer BERT of CLIP's pooled width with a tiny vocabulary (random weights)."""
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)})
    config = BertConfig(vocab_size=len(WORDS), hidden_size=width, num_hidden_layers=1, num_attention_heads=12,
                        intermediate_size=4 * width, max_position_embeddings=77)  # fmt: skip
    return tokenizer, BertModel(config).eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_times(runs: dict, repeats: int, device: str) -> dict[str, float]:
    """Best-of-``repeats`` seconds of each zero-argument callable, after one warm-up, interleaved."""
    for run in runs.values():
        run()
    synchronize(device)
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def aits(args, dtype: torch.dtype) -> list[dict]:
    torch.manual_seed(0)
    tokenizer, text_encoder = stand_in_text_encoder()
    vae = MotionVAE.from_preset("paper").eval()
    models = {
        "MotionMamba paper-n11": MotionMambaModel.from_preset("paper-n11"),
        "MotionMamba paper-total11": MotionMambaModel.from_preset("paper-total11"),
        "MLD (latent 2x256)": MLDDenoiser.from_preset("paper", latent_size=2),
    }
    pipes = {}
    for name, model in models.items():
        pipe = MotionMambaPipeline(model.eval(), mld_ddim_scheduler(), text_encoder, tokenizer, vae=vae)
        pipe.set_progress_bar_config(disable=True)
        pipes[name] = pipe.to(args.device) if dtype == torch.float32 else pipe.to(args.device, dtype)
    rows = []
    for batch in args.batch_sizes:

        def sample(pipe, batch=batch):
            pipe([PROMPT] * batch, num_frames=196, num_inference_steps=args.steps, guidance_scale=7.5,
                 generator=torch.Generator().manual_seed(0), output_type="pt")  # fmt: skip

        times = best_times(
            {name: (lambda p=pipe: sample(p)) for name, pipe in pipes.items()}, args.repeats, args.device
        )
        peer = times["MLD (latent 2x256)"] / batch
        print(f"\nAITS, batch {batch}, {args.steps} DDIM steps, CFG 7.5, 196 frames, {args.device} {dtype}:")
        print(f"  {'model':28s} {'params':>8s} {'s/sentence':>11s} {'ours/MLD':>9s}")
        for name, seconds in times.items():
            per_sentence = seconds / batch
            params = parameter_count(models[name]) / 1e6
            print(f"  {name:28s} {params:7.2f}M {per_sentence:11.4f} {per_sentence / peer:9.2f}")
            rows.append(dict(benchmark="aits", model=name, batch_size=batch, steps=args.steps, params=params * 1e6,
                             seconds_per_sentence=per_sentence, ratio_to_mld=per_sentence / peer))  # fmt: skip
    return rows


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    return overrides


def frame_scaling(args, dtype: torch.dtype) -> list[dict]:
    torch.manual_seed(0)
    model = MotionMambaModel.from_preset(args.frame_preset, **parse_overrides(args.frame_overrides)).eval()
    model = model.to(args.device) if dtype == torch.float32 else model.to(args.device, dtype)
    text = torch.randn(2, model.config.text_dim, device=args.device, dtype=dtype)

    def step(frames: int):
        sample = torch.randn(2, frames, model.config.in_channels, device=args.device, dtype=dtype)
        with torch.no_grad():
            model(sample, 500, text)

    times = best_times({n: (lambda n=n: step(n)) for n in args.frame_lengths}, args.repeats, args.device)
    base_frames = args.frame_lengths[0]
    overrides = " ".join(args.frame_overrides) or "none"
    print(f"\nFrame mode, preset {args.frame_preset} (overrides: {overrides}), "
          f"{parameter_count(model) / 1e6:.2f}M params, one guided step (batch 2), {args.device} {dtype}:")  # fmt: skip
    print(f"  {'frames':>7s} {'s/step':>9s} {'s/step/1k frames':>17s} {'growth vs linear':>17s}")
    rows = []
    for frames, seconds in times.items():
        growth = (seconds / times[base_frames]) / (frames / base_frames)
        print(f"  {frames:7d} {seconds:9.4f} {1000 * seconds / frames:17.4f} {growth:17.2f}")
        rows.append(dict(benchmark="frame_scaling", preset=args.frame_preset, overrides=overrides, frames=frames,
                         seconds_per_step=seconds, growth_vs_linear=growth))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frame-lengths", type=int, nargs="+", default=[200, 1000, 4000])
    parser.add_argument("--frame-preset", default="frame")
    parser.add_argument("--frame-overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-aits", action="store_true")
    parser.add_argument("--skip-frames", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="append the result rows to this JSON-lines file")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"device: {args.device} ({machine}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = [] if args.skip_aits else aits(args, dtype)
    rows += [] if args.skip_frames else frame_scaling(args, dtype)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row | {"device": args.device, "machine": machine, "dtype": args.dtype}) + "\n")


if __name__ == "__main__":
    main()
