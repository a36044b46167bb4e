"""Skeleton animations (GIF / MP4) and joint exports (.npy, BVH).

Animations are drawn with Pillow: an orthographic camera fixed for the whole motion (so the root
trajectory stays in view), a floor grid at the lowest joint height, the root's path on the floor (the part
already walked drawn darker), and the kinematic chains as coloured lines, farthest first. A frame counter
keeps consecutive frames distinct, so a GIF always has one image per motion frame. MP4 needs an ``ffmpeg``
executable (on ``PATH`` or from the ``imageio-ffmpeg`` package), fed raw RGB frames through a pipe.

BVH export fits rotations to the positions: the rest pose is the first frame; a joint with one child gets
the parent's rotation followed by the shortest arc onto its bone, a joint with several children (pelvis,
chest) the least-squares rotation of its child offsets (Kabsch). The BVH reproduces the positions exactly
when bone lengths are constant and each multi-child joint's children move rigidly, as in skeleton data
(HumanML3D ``new_joints``, forward kinematics); otherwise it is the closest rigid fit.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.motion.rotations import matrix_to_euler_zyx, quat_between, quat_to_matrix
from ..data.motion.skeleton import KIT_SKELETON, T2M_SKELETON, Skeleton, check_joints

__all__ = ["render_motion_frames", "save_bvh", "save_joints_npy", "save_motion_animation"]

_BUILT_IN = {T2M_SKELETON.num_joints: T2M_SKELETON, KIT_SKELETON.num_joints: KIT_SKELETON}
_CHAIN_COLOURS = ((214, 39, 40), (31, 119, 180), (60, 60, 60), (255, 127, 14), (44, 160, 44), (148, 103, 189))


def _skeleton_for(num_joints: int, skeleton: Skeleton | None) -> Skeleton:
    if skeleton is not None:
        if skeleton.num_joints != num_joints:
            raise ValueError(f"joints have {num_joints} joints but the skeleton has {skeleton.num_joints}")
        return skeleton
    if num_joints not in _BUILT_IN:
        raise ValueError(f"no built-in skeleton has {num_joints} joints (22: HumanML3D, 21: KIT-ML); pass one")
    return _BUILT_IN[num_joints]


def _check_chains(chains, num_joints: int) -> list[list[int]]:
    chains = [list(map(int, chain)) for chain in chains]
    if not chains or any(len(c) < 2 or min(c) < 0 or max(c) >= num_joints for c in chains):
        raise ValueError(f"kinematic_chain must be lists of >= 2 joint indices in [0, {num_joints}), got {chains}")
    return chains


def _nice_spacing(extent: float) -> float:
    """A 1-2-5 grid spacing giving about eight lines across ``extent``."""
    raw = extent / 8
    power = 10 ** np.floor(np.log10(raw))
    return float(power * min((1, 2, 5, 10), key=lambda m: abs(m * power - raw)))


def render_motion_frames(
    joints,
    kinematic_chain=None,
    size: int = 480,
    elevation: float = 20.0,
    azimuth: float = 45.0,
    title: str | None = None,
) -> list[Image.Image]:
    """Draw joints (T, J, 3), Y up, as T RGB images of ``size`` x ``size`` pixels.

    The camera follows the root over a floor grid fixed to the world, at one scale for the whole motion.

    Args:
        joints: joint positions, numpy or torch.
        kinematic_chain: lines to draw as lists of joint indices; default: the built-in skeleton's chains
            (22 joints: HumanML3D, 21: KIT-ML).
        elevation, azimuth: camera angles in degrees (azimuth from +Z towards +X).
        title: text drawn at the top of every frame (e.g. the caption).
    """
    positions = check_joints(joints).numpy()
    frames, num_joints = positions.shape[:2]
    if kinematic_chain is None:
        kinematic_chain = _skeleton_for(num_joints, None).kinematic_chains
    chains = _check_chains(kinematic_chain, num_joints)
    if not isinstance(size, int) or size < 64:
        raise ValueError(f"size must be an integer >= 64 pixels, got {size!r}")

    floor = positions[..., 1].min()
    root_on_floor = positions[:, 0] * [1.0, 0.0, 1.0] + [0.0, floor, 0.0]
    spread = np.abs((positions - root_on_floor[:, None]) * [1.0, 0.0, 1.0]).max()
    height = positions[..., 1].max() - floor
    half = 0.8 * max(height, 2 * spread, 1e-6)  # half the visible width around the root
    spacing = _nice_spacing(3 * half)
    a, e = np.radians(azimuth), np.radians(elevation)
    towards_camera = np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    right = np.cross(-towards_camera, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, -towards_camera)
    scale = size / (2 * half)
    look_at = root_on_floor + [0.0, 0.45 * height, 0.0]

    def to_pixels(points: np.ndarray, t: int) -> list[tuple[float, float]]:
        relative = points.reshape(-1, 3) - look_at[t]
        x, y = relative @ right * scale + size / 2, size / 2 - relative @ up * scale
        return list(zip(x.tolist(), y.tolist(), strict=True))

    depth = positions @ towards_camera  # larger is nearer the camera
    width = max(2, size // 120)
    font = ImageFont.load_default(size=max(10, size // 32))
    images = []
    for t in range(frames):
        image = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        centre = root_on_floor[t]
        lines = (
            np.arange(
                np.floor((min(centre[0], centre[2]) - 2 * half) / spacing),
                np.ceil((max(centre[0], centre[2]) + 2 * half) / spacing) + 1,
            )
            * spacing
        )
        for value in lines:
            if abs(value - centre[0]) <= 2 * half:
                draw.line(
                    to_pixels(
                        np.array([[value, floor, centre[2] - 2 * half], [value, floor, centre[2] + 2 * half]]), t
                    ),
                    fill=(215, 215, 215),
                )
            if abs(value - centre[2]) <= 2 * half:
                draw.line(
                    to_pixels(
                        np.array([[centre[0] - 2 * half, floor, value], [centre[0] + 2 * half, floor, value]]), t
                    ),
                    fill=(215, 215, 215),
                )
        draw.line(to_pixels(root_on_floor, t), fill=(200, 200, 235), width=width)
        if t > 0:
            draw.line(to_pixels(root_on_floor[: t + 1], t), fill=(70, 70, 200), width=width)
        for index in sorted(range(len(chains)), key=lambda i: depth[t, chains[i]].mean()):
            colour = _CHAIN_COLOURS[index % len(_CHAIN_COLOURS)]
            draw.line(to_pixels(positions[t, chains[index]], t), fill=colour, width=2 * width, joint="curve")
        draw.text((8, size - 8), f"frame {t + 1}/{frames}", fill=(90, 90, 90), font=font, anchor="ld")
        if title:
            draw.text((8, 8), title, fill=(0, 0, 0), font=font)
        images.append(image)
    return images


def _ffmpeg_executable() -> str:
    executable = shutil.which("ffmpeg")
    if executable is None:
        try:
            import imageio_ffmpeg
        except ImportError:
            executable = None
        else:
            executable = imageio_ffmpeg.get_ffmpeg_exe()
    if executable is None:
        raise RuntimeError(
            "saving .mp4 needs an ffmpeg executable: install ffmpeg on PATH or `pip install imageio-ffmpeg`, "
            "or save a .gif instead"
        )
    return executable


def save_motion_animation(
    joints,
    path: str | Path,
    fps: float = 20.0,
    kinematic_chain=None,
    title: str | None = None,
    size: int = 480,
    elevation: float = 20.0,
    azimuth: float = 45.0,
) -> Path:
    """Write joints (T, J, 3) as an animated ``.gif`` (Pillow) or ``.mp4`` (ffmpeg) with one frame per
    motion frame at ``fps``; see ``render_motion_frames`` for the drawing options. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"path must end in .gif or .mp4, got {path.name!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if suffix == ".mp4" and size % 2:
        raise ValueError(f"size must be even for .mp4 (yuv420p), got {size}")
    executable = _ffmpeg_executable() if suffix == ".mp4" else None
    images = render_motion_frames(joints, kinematic_chain, size, elevation, azimuth, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    command = [
        executable, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
        "-r", f"{fps}", "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    result = subprocess.run(command, input=b"".join(i.tobytes() for i in images), capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}")
    return path


def save_joints_npy(joints, path: str | Path) -> Path:
    """Save joints (T, J, 3) as a float32 ``.npy`` file (the ``new_joints`` format). Returns the path."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"path must end in .npy, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, check_joints(joints).numpy().astype(np.float32))
    return path


def _kabsch(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rotations (T, 3, 3) minimising sum |R s_k - t_k|^2 for source (K, 3) and target (T, K, 3)."""
    covariance = torch.einsum("tkc,kd->tcd", target, source)
    u, _, vh = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vh))
    correction = torch.diag_embed(torch.stack((torch.ones_like(sign), torch.ones_like(sign), sign), -1))
    return u @ correction @ vh


def _world_rotations(positions: torch.Tensor, skeleton: Skeleton) -> list[torch.Tensor | None]:
    """World rotation (T, 3, 3) of every joint with children, relative to the first frame's pose."""
    parents = skeleton.parents
    children = [[c for c in range(skeleton.num_joints) if parents[c] == j] for j in range(skeleton.num_joints)]
    rest = positions[0]
    world: list[torch.Tensor | None] = [None] * skeleton.num_joints
    for joint in range(skeleton.num_joints):  # parents come before children in both built-in skeletons
        kids = children[joint]
        if not kids:
            continue
        current = positions[:, kids] - positions[:, joint : joint + 1]
        rest_offsets = rest[kids] - rest[joint]
        if len(kids) > 1 or joint == 0:
            world[joint] = _kabsch(rest_offsets, current)
            continue
        inherited = world[parents[joint]]
        carried = inherited @ rest_offsets[0]  # (T, 3): the bone before this joint bends
        world[joint] = quat_to_matrix(quat_between(carried, current[:, 0])) @ inherited
    return world


def save_bvh(joints, path: str | Path, fps: float = 20.0, skeleton: Skeleton | None = None) -> Path:
    """Write joints (T, J, 3) as a BVH file (see the module docstring) and return the path.

    Offsets and positions are in the joints' unit (metres for HumanML3D); rotation channels are
    ``Zrotation Yrotation Xrotation`` in degrees. ``skeleton`` defaults to the built-in one for the joint
    count and gives the hierarchy and joint names.
    """
    path = Path(path)
    if path.suffix.lower() != ".bvh":
        raise ValueError(f"path must end in .bvh, got {path.name!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    positions = check_joints(joints)
    skeleton = _skeleton_for(positions.shape[1], skeleton)
    parents = skeleton.parents
    if any(parents[j] >= j for j in range(1, skeleton.num_joints)):
        raise ValueError("save_bvh needs every joint's parent to have a smaller index")
    world = _world_rotations(positions, skeleton)
    identity = torch.eye(3, dtype=positions.dtype).expand(positions.shape[0], 3, 3)
    rest = positions[0].numpy()
    lines, channels = ["HIERARCHY"], [positions[:, 0]]

    def write_joint(joint: int, depth: int) -> None:  # depth first: the order of the motion channels
        pad = "  " * depth
        kids = [c for c in range(skeleton.num_joints) if parents[c] == joint]
        rotation = world[joint] if kids else world[parents[joint]]  # leaves do not rotate anything
        parent_rotation = world[parents[joint]] if joint > 0 else identity
        channels.append(torch.rad2deg(matrix_to_euler_zyx(parent_rotation.transpose(-1, -2) @ rotation)))
        offset = rest[joint] - rest[parents[joint]] if joint > 0 else np.zeros(3)
        lines.append(f"{pad}{'ROOT' if joint == 0 else 'JOINT'} {skeleton.joint_names[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        position_channels = "Xposition Yposition Zposition " if joint == 0 else ""
        lines.append(f"{pad}  CHANNELS {6 if joint == 0 else 3} {position_channels}Zrotation Yrotation Xrotation")
        for child in kids:
            write_joint(child, depth + 1)
        if not kids:
            tip = 0.25 * offset
            lines.extend(
                [
                    f"{pad}  End Site",
                    f"{pad}  {{",
                    f"{pad}    OFFSET {tip[0]:.6f} {tip[1]:.6f} {tip[2]:.6f}",
                    f"{pad}  }}",
                ]
            )
        lines.append(f"{pad}}}")

    write_joint(0, 0)
    motion = torch.cat(channels, dim=-1).numpy()
    lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {1.0 / fps:.6f}"]
    lines += [" ".join(f"{value:.6f}" for value in frame) for frame in motion]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
