"""Skeleton animations and joint exports: GIF frame counts, the ffmpeg pipe, BVH parsed back."""

import stat
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from ssmgen.data.motion import KIT_SKELETON, T2M_SKELETON, generate_motion
from ssmgen.viz import save_bvh, save_joints_npy, save_motion_animation


@pytest.fixture(scope="module")
def joints():
    return generate_motion(np.random.default_rng(0), ("wave",)).joints[:12]


def test_gif_has_one_frame_per_motion_frame_at_the_requested_rate(tmp_path, joints):
    path = save_motion_animation(joints, tmp_path / "wave.gif", fps=20, size=96, title="a person waves")
    with Image.open(path) as gif:
        assert gif.n_frames == len(joints) and gif.size == (96, 96)
        assert gif.info["duration"] == 50
    kit = np.random.default_rng(1).normal(size=(5, 21, 3)) * 300.0
    with Image.open(save_motion_animation(kit, tmp_path / "kit.gif", fps=12.5, size=64)) as gif:
        assert gif.n_frames == 5 and gif.info["duration"] == 80


def test_mp4_without_ffmpeg_is_a_clear_error(tmp_path, joints, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # importing it raises ImportError
    with pytest.raises(RuntimeError, match="needs an ffmpeg executable"):
        save_motion_animation(joints, tmp_path / "wave.mp4")


def test_mp4_pipes_every_frame_to_ffmpeg(tmp_path, joints, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"  # records its arguments and how many bytes of frames it was fed
    fake.write_text(
        f"#!{sys.executable}\nimport sys\ndata = sys.stdin.buffer.read()\n"
        "open(sys.argv[-1], 'w').write(' '.join(sys.argv[1:]) + '\\n' + str(len(data)))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    path = save_motion_animation(joints, tmp_path / "wave.mp4", fps=20, size=64)
    arguments, byte_count = path.read_text().splitlines()
    assert int(byte_count) == len(joints) * 64 * 64 * 3
    assert "-s 64x64" in arguments and "-r 20" in arguments and "-pix_fmt yuv420p" in arguments


def parse_bvh(text):
    """A minimal BVH reader: joint names, parents, offsets, channel counts, motion matrix, frame time."""
    names, parents, offsets, channels, stack = [], [], [], [], []
    lines = iter(text.splitlines())
    for line in lines:
        words = line.split()
        if words[0] in ("ROOT", "JOINT"):
            names.append(words[1])
            parents.append(stack[-1] if stack else -1)
        elif words[0] == "OFFSET" and len(offsets) < len(names):
            offsets.append([float(w) for w in words[1:]])
        elif words[0] == "CHANNELS":
            channels.append(words[2:])
        elif words[0] == "End":
            next(lines), next(lines), next(lines)  # "{", OFFSET, "}"
        elif words[0] == "{" and len(stack) < len(names):
            stack.append(len(names) - 1)
        elif words[0] == "}":
            stack.pop()
        elif words[0] == "MOTION":
            frames = int(next(lines).split()[1])
            frame_time = float(next(lines).split()[2])
            motion = np.array([[float(w) for w in next(lines).split()] for _ in range(frames)])
            return names, parents, np.array(offsets), channels, motion, frame_time
    raise AssertionError("no MOTION section")


def bvh_positions(parents, offsets, channels, motion):
    """Forward kinematics of parsed BVH data with scipy (intrinsic Z, Y, X channels in degrees)."""
    column, world, positions = 0, [], []
    for joint, parent in enumerate(parents):
        if parent < 0:
            origin = motion[:, column : column + 3]
            column += 3
        assert channels[joint][-3:] == ["Zrotation", "Yrotation", "Xrotation"]
        local = Rotation.from_euler("ZYX", motion[:, column : column + 3], degrees=True)
        column += 3
        if parent >= 0:
            origin = positions[parent] + world[parent].apply(offsets[joint])
        world.append(local if parent < 0 else world[parent] * local)
        positions.append(origin)
    return np.stack(positions, axis=1)


def test_bvh_parses_back_to_the_same_joint_positions(tmp_path):
    joints = generate_motion(np.random.default_rng(2), ("walk",)).joints
    path = save_bvh(joints, tmp_path / "walk.bvh", fps=20)
    names, parents, offsets, channels, motion, frame_time = parse_bvh(path.read_text())
    assert sorted(names) == sorted(T2M_SKELETON.joint_names) and frame_time == pytest.approx(0.05)
    order = [T2M_SKELETON.joint_names.index(name) for name in names]  # BVH lists joints depth first
    assert [order[p] if p >= 0 else -1 for p in parents] == [T2M_SKELETON.parents[j] for j in order]
    assert motion.shape == (len(joints), 6 + 3 * 21)
    np.testing.assert_allclose(bvh_positions(parents, offsets, channels, motion), joints[:, order], atol=2e-4)


def test_bvh_of_kit_joints_uses_the_kit_hierarchy(tmp_path):
    rng = np.random.default_rng(3)
    frame = KIT_SKELETON.reference_offsets.copy()
    for joint in range(1, 21):
        frame[joint] += frame[KIT_SKELETON.parents[joint]]
    joints = np.repeat(frame[None], 4, axis=0) + rng.normal(size=(4, 1, 3)) * 10.0  # a translated rest pose
    names, parents, offsets, channels, motion, _ = parse_bvh(
        save_bvh(joints, tmp_path / "kit.bvh", fps=12.5).read_text()
    )
    assert sorted(names) == sorted(KIT_SKELETON.joint_names) and len(motion) == 4
    order = [KIT_SKELETON.joint_names.index(name) for name in names]
    np.testing.assert_allclose(bvh_positions(parents, offsets, channels, motion), joints[:, order], atol=2e-4)


def test_npy_export_round_trips_and_bad_arguments_raise(tmp_path, joints):
    np.testing.assert_array_equal(np.load(save_joints_npy(joints, tmp_path / "j.npy")), joints.astype(np.float32))
    with pytest.raises(ValueError, match=".gif or .mp4"):
        save_motion_animation(joints, tmp_path / "x.avi")
    with pytest.raises(ValueError, match="even"):
        save_motion_animation(joints, tmp_path / "x.mp4", size=97)
    with pytest.raises(ValueError, match="fps"):
        save_motion_animation(joints, tmp_path / "x.gif", fps=0)
    with pytest.raises(ValueError, match="kinematic_chain"):
        save_motion_animation(joints, tmp_path / "x.gif", kinematic_chain=[[0, 30]])
    with pytest.raises(ValueError, match="no built-in skeleton has 5 joints"):
        save_bvh(joints[:, :5], tmp_path / "x.bvh")
    with pytest.raises(ValueError, match="\\.bvh"):
        save_bvh(joints, tmp_path / "x.txt")
    with pytest.raises(ValueError, match="NaN"):
        save_joints_npy(np.full((3, 22, 3), np.nan), tmp_path / "nan.npy")
    with pytest.raises(ValueError, match="\\.npy"):
        save_joints_npy(joints, tmp_path / "j.npz")
