"""``ssmgen sample``: load any saved pipeline folder and write what it generates.

Image pipelines (ssmgen's class-conditional ones, or diffusers' unconditional ``DDPMPipeline``
style) write one PNG per sample and a grid; the motion pipeline writes, per prompt, the joints
(.npy), an animation (.gif) and a BVH file.
"""

import argparse
import json
from pathlib import Path

import torch


def image_grid(images: torch.Tensor, rows: int, scale: int = 1):
    """(B, C, H, W) in [0, 1] -> a PIL image with ``rows`` rows, each image upscaled ``scale`` times."""
    from PIL import Image

    batch, channels, height, width = images.shape
    cols = -(-batch // rows)
    canvas = torch.ones(channels, rows * (height + 1) + 1, cols * (width + 1) + 1)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[
            :, 1 + r * (height + 1) : 1 + r * (height + 1) + height, 1 + c * (width + 1) : 1 + c * (width + 1) + width
        ] = image
    array = (canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).squeeze(-1).numpy()
    grid = Image.fromarray(array)
    return grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST) if scale > 1 else grid


def _class_label(item: str):
    return int(item) if item.lstrip("-").isdigit() else item


def sample_images(pipe, args) -> list[str]:
    """Generate images with a class-conditional or unconditional pipeline; returns written paths."""
    import inspect

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    call = inspect.signature(pipe.__call__).parameters
    kwargs = {"num_inference_steps": args.steps, "generator": torch.Generator().manual_seed(args.seed)}
    if "output_type" in call:
        kwargs["output_type"] = "pt"
    if args.guidance_scale is not None and "guidance_scale" in call:
        kwargs["guidance_scale"] = args.guidance_scale
    if args.class_labels and "class_labels" in call:
        labels = [_class_label(c) for c in args.class_labels for _ in range(args.num_per_label)]
        kwargs["class_labels"] = labels
    else:
        if args.class_labels:
            raise ValueError("--class-labels: this pipeline is unconditional")
        kwargs["batch_size"] = args.num_images
        labels = ["sample"] * args.num_images
    images = pipe(**kwargs).images
    if not isinstance(images, torch.Tensor):  # pipelines without output_type="pt" return PIL images
        import numpy as np

        images = torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) / 255 for i in images]))
        images = images.permute(0, 3, 1, 2) if images.dim() == 4 else images[:, None]
    written = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = out / f"{i:05d}_{label}.png"
        image_grid(image[None], rows=1).save(path)
        written.append(str(path))
    rows = len(args.class_labels) if args.class_labels else 1
    image_grid(images, rows=rows, scale=args.grid_scale).save(out / "grid.png")
    written.append(str(out / "grid.png"))
    return written


def sample_motions(pipe, args) -> list[str]:
    """Generate one motion per prompt: joints .npy, .gif animation and .bvh; returns written paths."""
    from ssmgen.viz import save_bvh, save_joints_npy, save_motion_animation

    if not args.prompt:
        raise ValueError("--prompt: a motion pipeline needs at least one prompt")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"num_frames": args.num_frames, "generator": torch.Generator().manual_seed(args.seed)}
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
    if args.guidance_scale is not None:
        kwargs["guidance_scale"] = args.guidance_scale
    result = pipe(args.prompt, **kwargs)
    written = []
    for i, (prompt, joints, length) in enumerate(zip(args.prompt, result.joints, result.lengths, strict=True)):
        stem = out / f"{i:03d}"
        joints = joints[: int(length)]
        save_joints_npy(joints, f"{stem}.npy")
        save_motion_animation(joints, f"{stem}.gif", title=prompt)
        save_bvh(joints, f"{stem}.bvh")
        (out / f"{i:03d}.txt").write_text(prompt + "\n")
        written += [f"{stem}.npy", f"{stem}.gif", f"{stem}.bvh"]
    return written


def main(argv: list[str], parser: argparse.ArgumentParser) -> int:
    parser.add_argument("pipeline", help="a folder written by save_pretrained (ssmgen or diffusers)")
    parser.add_argument("--out", default="samples", help="output folder (default: samples)")
    parser.add_argument("--class-labels", nargs="+", help="class ids or names (class-conditional pipelines)")
    parser.add_argument("--num-per-label", type=int, default=1, help="images per class label")
    parser.add_argument("--num-images", type=int, default=8, help="images for an unconditional pipeline")
    parser.add_argument("--prompt", nargs="+", help="text prompts (motion pipelines)")
    parser.add_argument("--num-frames", type=int, default=120, help="frames per motion (20 fps)")
    parser.add_argument("--steps", type=int, default=None, help="inference steps (default: the pipeline's)")
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid-scale", type=int, default=4, help="upscaling of the image grid")
    parser.add_argument("--device", default="cpu", help="torch device to sample on (cpu, cuda)")
    args = parser.parse_args(argv)
    if not (Path(args.pipeline) / "model_index.json").is_file():
        parser.error(f"pipeline: {args.pipeline!r} has no model_index.json (not a saved pipeline folder)")

    from diffusers import DiffusionPipeline

    import ssmgen.pipelines  # noqa: F401  (registers the ssmgen classes with diffusers)
    from ssmgen.pipelines import MotionMambaPipeline

    pipe = DiffusionPipeline.from_pretrained(args.pipeline).to(args.device)
    if args.steps is None and not isinstance(pipe, MotionMambaPipeline):
        args.steps = 50
    written = sample_motions(pipe, args) if isinstance(pipe, MotionMambaPipeline) else sample_images(pipe, args)
    print(json.dumps({"pipeline": args.pipeline, "written": written}, indent=1))
    return 0
