"""A built-in synthetic text-motion dataset on the HumanML3D skeleton, so demos, tests and the motion
evaluator can train offline.

Each motion is one or two *actions* (walk, run, jump, wave, kick, turn, sit, crouch/squat, punch, raise
arms, jumping jacks, bow) drawn with random parameters (speed, direction, side, repetitions, duration),
written as joint-angle curves on a 22-joint body with the t2m bone lengths, posed by forward kinematics and
placed on the ground:

- the root height keeps the lowest foot joint on the floor, plus a flight height for jumps and runs;
- on the ground the root moves so that the planted foot stays put (no foot sliding, so walking speed
  follows from stride and cadence); walks and runs plant the foot their gait phase says, other actions
  the lower foot; in flight a run keeps its last ground velocity, a jump moves by its push only.

Actions start and end at the rest pose (raised-cosine ramps), so they can be chained. Captions come from
templates (``captions``): three whole-motion captions per motion and, for two-action motions, one caption
per action with its start/end time, as in HumanML3D's ``caption#tokens#start#end`` lines.

``build_synthetic_dataset`` runs the joints through ``extract_features`` (with ``fix_heading_wrap=True``:
circles and turn-arounds pass through -Z) and writes the HumanML3D folder layout. Everything is drawn from
one ``numpy.random.Generator``, so a seed gives identical files.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssmgen.runtime import single_threaded

from .captions import make_caption
from .dataset import Caption, format_caption_line
from .features import extract_features, recover_from_ric
from .normalization import compute_mean_std, save_mean_std
from .rotations import euler_to_matrix
from .skeleton import T2M_SKELETON

__all__ = ["ACTIONS", "SyntheticMotion", "build_synthetic_dataset", "generate_motion"]

FPS = T2M_SKELETON.fps
MIN_FRAMES, MAX_FRAMES = 41, 197  # joint frames: features have one frame less (40..196)
PITCH, YAW, ROLL = 0, 1, 2  # angle components; local rotation = R_y(yaw) @ R_z(roll) @ R_x(pitch)
LEFT, RIGHT = 1, -1  # side signs: the body's left is +X

(PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3, L_FOOT, R_FOOT, NECK,
 L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST) = range(22)  # fmt: skip
FOOT_JOINTS = (L_ANKLE, L_FOOT, R_ANKLE, R_FOOT)

# Rest pose (standing, arms down, facing +Z): unit direction of every bone from its parent joint.
_REST_DIRECTIONS = np.array(
    [
        [0, 0, 0], [0.55, -0.83, -0.05], [-0.55, -0.83, -0.05], [0, 1, -0.12], [0.03, -1, 0], [-0.03, -1, 0],
        [0, 1, 0.1], [0, -1, -0.06], [0, -1, -0.06], [0, 1, 0.05], [0, -0.45, 1], [0, -0.45, 1],
        [0, 1, -0.05], [0.6, 0.75, -0.1], [-0.6, 0.75, -0.1], [0, 1, 0.3], [1, -0.15, -0.05],
        [-1, -0.15, -0.05], [0.12, -1, 0], [-0.12, -1, 0], [0.05, -1, 0.1], [-0.05, -1, 0.1],
    ],
    dtype=np.float64,
)  # fmt: skip
_REST_DIRECTIONS[1:] /= np.linalg.norm(_REST_DIRECTIONS[1:], axis=-1, keepdims=True)


@dataclass
class ActionClip:
    """One action as curves over T frames; see ``_place_on_ground`` for how they become a trajectory.

    Attributes:
        angles: (T, 22, 3) local joint angles (pitch, yaw, roll) in radians.
        yaw_rate: (T,) heading change in rad/s; positive turns left.
        airborne: (T,) height of the feet above the floor in metres (0 on the ground).
        push: (T, 2) body-frame velocity (x to the left, z forward) in m/s added while airborne.
        momentum: (T,) 1 where an airborne frame also keeps the last ground velocity (running), else 0.
        support: (T,) the planted foot, 0 left or 1 right, or -1 for whichever foot is lower.
        phrases: verb phrases that describe the action ("{poss}" stands for the possessive).
    """

    angles: np.ndarray
    yaw_rate: np.ndarray
    airborne: np.ndarray
    push: np.ndarray
    momentum: np.ndarray
    support: np.ndarray
    phrases: list[str]

    @property
    def frames(self) -> int:
        return self.angles.shape[0]


class _Pose:
    """Joint-angle curves with anatomical setters; every setter adds, so layers combine."""

    def __init__(self, frames: int) -> None:
        self.angles = np.zeros((frames, 22, 3))
        self.yaw_rate = np.zeros(frames)
        self.airborne = np.zeros(frames)
        self.push = np.zeros((frames, 2))
        self.momentum = np.zeros(frames)
        self.support = np.full(frames, -1)

    def _add(self, joint: int, component: int, value) -> None:
        self.angles[:, joint, component] += value

    def hip(self, side: int, flexion=0.0, abduction=0.0) -> None:
        joint = L_HIP if side == LEFT else R_HIP
        self._add(joint, PITCH, -np.asarray(flexion))
        self._add(joint, ROLL, side * np.asarray(abduction))

    def knee(self, side: int, flexion) -> None:
        self._add(L_KNEE if side == LEFT else R_KNEE, PITCH, flexion)

    def ankle(self, side: int, plantar_flexion) -> None:
        self._add(L_ANKLE if side == LEFT else R_ANKLE, PITCH, plantar_flexion)

    def shoulder(self, side: int, flexion=0.0, abduction=0.0) -> None:
        joint = L_SHOULDER if side == LEFT else R_SHOULDER
        self._add(joint, PITCH, -np.asarray(flexion))
        self._add(joint, ROLL, side * np.asarray(abduction))

    def elbow(self, side: int, flexion=0.0, outward=0.0) -> None:
        joint = L_ELBOW if side == LEFT else R_ELBOW
        self._add(joint, PITCH, -np.asarray(flexion))
        self._add(joint, ROLL, side * np.asarray(outward))

    def spine(self, lean=0.0, twist=0.0) -> None:
        """Forward lean and twist to the left, spread over the three spine joints."""
        for joint in (SPINE1, SPINE2, SPINE3):
            self._add(joint, PITCH, np.asarray(lean) / 3)
            self._add(joint, YAW, np.asarray(twist) / 3)

    def pelvis(self, tilt=0.0, twist=0.0) -> None:
        self._add(PELVIS, PITCH, tilt)
        self._add(PELVIS, YAW, twist)

    def head(self, nod=0.0) -> None:
        self._add(NECK, PITCH, nod)

    def keep_feet_flat(self) -> None:
        """Set the ankles so each foot's pitch cancels the pelvis, hip and knee pitch above it."""
        for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
            chain = self.angles[:, PELVIS, PITCH] + self.angles[:, hip, PITCH] + self.angles[:, knee, PITCH]
            self.angles[:, ankle, PITCH] -= chain

    def clip(self, phrases: list[str]) -> ActionClip:
        return ActionClip(self.angles, self.yaw_rate, self.airborne, self.push, self.momentum, self.support, phrases)


def _times(frames: int) -> np.ndarray:
    return np.arange(frames) / FPS


def _envelope(frames: int, ramp_seconds: float = 0.5) -> np.ndarray:
    """1 in the middle, raised-cosine ramps from and back to 0 at both ends."""
    ramp = max(1, min(int(ramp_seconds * FPS), frames // 2))
    up = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    envelope = np.ones(frames)
    envelope[:ramp], envelope[frames - ramp :] = up, up[::-1]
    return envelope


def _bump(u: np.ndarray, start: float, end: float) -> np.ndarray:
    """A smooth 0 -> 1 -> 0 bump on [start, end] of the cycle position u (0 outside)."""
    x = np.clip((u - start) / (end - start), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def _hold(u: np.ndarray, rise: tuple[float, float], fall: tuple[float, float]) -> np.ndarray:
    """Smoothly 0 -> 1 over ``rise``, 1 until ``fall``, then back to 0."""
    up = np.clip((u - rise[0]) / (rise[1] - rise[0]), 0.0, 1.0)
    down = np.clip((u - fall[0]) / (fall[1] - fall[0]), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 + 0.5 * np.cos(np.pi * down))


def _side_name(side: int) -> str:
    return "left" if side == LEFT else "right"


def _count_words(count: int) -> list[str]:
    return {1: ["once", ""], 2: ["twice", "two times"], 3: ["three times"], 4: ["four times"], 5: ["five times"]}[count]


_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _with_count(phrases: list[str], count: int) -> list[str]:
    return [f"{p} {c}".strip() for p in phrases for c in _count_words(count)]


def _frames_for(seconds: float, budget: int) -> int:
    return int(min(seconds * FPS, budget))


def _gait(phase: np.ndarray) -> np.ndarray:
    """A rounded triangle wave in [-1, 1]: the hip sweeps at a nearly constant rate, so a planted foot
    carries the body at a nearly constant speed (a sine would stall it at every foot strike)."""
    return np.arcsin(0.9 * np.sin(phase)) / np.arcsin(0.9)


def _arm_swing(pose: _Pose, phase: np.ndarray, amplitude, elbow) -> None:
    """Arms swing opposite to the legs (left arm with the right leg)."""
    for side, offset in ((LEFT, 0.0), (RIGHT, np.pi)):
        pose.shoulder(side, flexion=-amplitude * np.sin(phase + offset))
        pose.elbow(side, flexion=elbow)


def _walk(rng: np.random.Generator, budget: int) -> ActionClip:
    speed = rng.choice(["slow", "normal", "fast"])
    direction = rng.choice(["forward", "forward", "forward", "backward", "left", "right"])
    curve = rng.choice(["none", "none", "left", "right", "circle"]) if direction == "forward" else "none"
    frames = _frames_for(rng.uniform(6.0, 9.5) if curve == "circle" else rng.uniform(3.0, 9.5), budget)
    t, env = _times(frames), _envelope(frames)
    cadence = {"slow": 1.5, "normal": 1.85, "fast": 2.2}[speed] * rng.uniform(0.93, 1.07)  # steps per second
    amplitude = {"slow": 0.3, "normal": 0.42, "fast": 0.52}[speed] * rng.uniform(0.9, 1.1) * env
    phase = np.pi * cadence * t + rng.uniform(0, 2 * np.pi)
    pose = _Pose(frames)
    if direction in ("forward", "backward"):
        swing_sign = 1.0 if direction == "forward" else -1.0
        for side, offset in ((LEFT, 0.0), (RIGHT, np.pi)):
            leg_phase = phase + offset
            pose.hip(side, flexion=amplitude * _gait(leg_phase))
            pose.knee(side, 0.08 * env + 2.0 * amplitude * np.maximum(0, swing_sign * np.cos(leg_phase)) ** 1.2)
        pose.support[:] = np.where(swing_sign * np.cos(phase) > 0, 1, 0)  # the left leg swings: right planted
        _arm_swing(pose, phase, 0.8 * amplitude, 0.2 + 0.3 * amplitude)
        pose.pelvis(twist=0.15 * amplitude * np.sin(phase))
        pose.spine(lean=0.05 * swing_sign * env, twist=-0.25 * amplitude * np.sin(phase))
    else:
        lead = LEFT if direction == "left" else RIGHT
        spread = 0.35 * amplitude / 0.42 * (0.5 - 0.5 * np.cos(phase))
        for side, lifted in ((lead, np.sin(phase)), (-lead, -np.sin(phase))):
            pose.hip(side, flexion=0.25 * amplitude * np.maximum(0, lifted), abduction=spread)
            pose.knee(side, 0.08 * env + 1.2 * amplitude * np.maximum(0, lifted))
        lead_foot, trail_foot = (0, 1) if lead == LEFT else (1, 0)
        pose.support[:] = np.where(np.sin(phase) > 0, trail_foot, lead_foot)
        _arm_swing(pose, phase, 0.1 * amplitude, 0.25)
    pose.keep_feet_flat()

    adverb = {
        "slow": ["slowly", "at a slow pace", ""],
        "normal": ["", "at a normal pace", "steadily"],
        "fast": ["quickly", "briskly", "at a fast pace"],
    }[speed]
    if curve == "circle":
        turn = 1 if rng.random() < 0.5 else -1
        pose.yaw_rate += turn * 2 * np.pi / (frames / FPS) * env / env.mean()
        spin = "counterclockwise" if turn == 1 else "clockwise"
        base = ["walks in a circle", "walks around in a circle", f"walks in a {spin} circle"]
    else:
        side = {"forward": None, "backward": None, "left": "left", "right": "right"}[direction]
        base = {
            "forward": ["walks forward", "walks straight ahead", "takes a few steps forward", "walks ahead"],
            "backward": ["walks backward", "walks backwards", "takes a few steps back", "steps backward"],
        }.get(direction, [f"sidesteps to the {side}", f"walks sideways to the {side}", f"shuffles to the {side}"])
        if curve in ("left", "right"):
            turn = LEFT if curve == "left" else RIGHT
            pose.yaw_rate += turn * (np.pi / 2) / (frames / FPS) * env / env.mean()
            base = [f"{b} {s}" for b in base[:2] for s in (f"and turns {curve}", f"while turning to the {curve}")]
    return pose.clip([f"{b} {a}".strip() for b in base for a in adverb])


def _run(rng: np.random.Generator, budget: int) -> ActionClip:
    speed = rng.choice(["jog", "run", "sprint"])
    curve = rng.choice(["none", "none", "left", "right"])
    frames = _frames_for(rng.uniform(3.0, 9.0), budget)
    t, env = _times(frames), _envelope(frames, 0.6)
    cadence = {"jog": 2.6, "run": 2.9, "sprint": 3.2}[speed] * rng.uniform(0.95, 1.05)
    amplitude = {"jog": 0.45, "run": 0.6, "sprint": 0.75}[speed] * rng.uniform(0.9, 1.1) * env
    knee_swing = {"jog": 1.2, "run": 1.5, "sprint": 1.8}[speed]
    flight = {"jog": 0.03, "run": 0.05, "sprint": 0.08}[speed]
    phase = np.pi * cadence * t + rng.uniform(0, 2 * np.pi)
    pose = _Pose(frames)
    for side, offset in ((LEFT, 0.0), (RIGHT, np.pi)):
        leg_phase = phase + offset
        pose.hip(side, flexion=amplitude * _gait(leg_phase) + 0.1 * env)
        pose.knee(side, 0.25 * env + knee_swing * env * np.maximum(0, np.cos(leg_phase)) ** 1.2)
    pose.support[:] = np.where(np.cos(phase) > 0, 1, 0)
    _arm_swing(pose, phase, 0.9 * amplitude, 1.4 * env)
    pose.spine(lean={"jog": 0.12, "run": 0.18, "sprint": 0.25}[speed] * env, twist=-0.3 * amplitude * np.sin(phase))
    pose.keep_feet_flat()
    pose.airborne += flight * env * np.maximum(0, (-np.cos(2 * phase) - 0.3) / 0.7)
    pose.momentum += 1.0

    base = {
        "jog": ["jogs forward", "jogs at a steady pace", "runs slowly", "jogs"],
        "run": ["runs forward", "runs straight ahead", "runs"],
        "sprint": ["sprints forward", "runs fast", "sprints ahead"],
    }[speed]
    if curve != "none":
        turn = LEFT if curve == "left" else RIGHT
        pose.yaw_rate += turn * (np.pi / 2) / (frames / FPS) * env / env.mean()
        base = [f"{b} {s}" for b in base[:2] for s in (f"and turns {curve}", f"in a curve to the {curve}")]
    return pose.clip(base)


def _cycles(rng: np.random.Generator, budget: int, period: float, counts: tuple[int, int], lead: float = 0.3):
    """Repetitions of a ``period``-second cycle after ``lead`` seconds of rest, fitted to the budget.

    Returns (frames, count, position, active): ``position`` (T,) counts cycles (its fraction is the place
    within the current cycle, its floor the cycle index) and ``active`` (T,) marks the cycling frames.
    """
    count = int(rng.integers(counts[0], counts[1] + 1))
    count = max(1, min(count, int((budget / FPS - 2 * lead) // period)))
    frames = _frames_for(count * period + 2 * lead, budget)
    t = _times(frames)
    position = np.clip((t - lead) / period, 0.0, count - 1e-9)
    return frames, count, position, (t >= lead) & (t < lead + count * period)


def _jump(rng: np.random.Generator, budget: int) -> ActionClip:
    style = rng.choice(["in place", "forward", "up"])
    frames, count, position, active = _cycles(rng, budget, rng.uniform(1.1, 1.4), (1, 3))
    u = position % 1.0
    height = rng.uniform(0.25, 0.45)
    crouch = (_bump(u, 0.0, 0.45) + _bump(u, 0.68, 1.0)) * active
    flight = np.where((u > 0.4) & (u < 0.7) & active, np.sin(np.pi * np.clip((u - 0.4) / 0.3, 0, 1)), 0.0)
    pose = _Pose(frames)
    for side in (LEFT, RIGHT):
        pose.hip(side, flexion=0.9 * crouch + 0.25 * flight)
        pose.knee(side, 1.5 * crouch + 0.35 * flight)
        pose.shoulder(side, flexion=-0.7 * _bump(u, 0.05, 0.4) * active + 2.4 * flight, abduction=0.1)
        pose.elbow(side, flexion=0.3 * crouch + 0.2)
    pose.pelvis(tilt=0.45 * crouch)
    pose.keep_feet_flat()
    for side in (LEFT, RIGHT):
        pose.ankle(side, 0.5 * flight)
    pose.airborne += height * flight
    if style == "forward":
        pose.push[:, 1] += 1.6 * (flight > 0)
    base = {
        "in place": ["jumps in place", "jumps up and down", "hops in place"],
        "forward": ["jumps forward", "leaps forward", "does a jump forward"],
        "up": ["jumps up", "jumps into the air", "jumps high"],
    }[style]
    return pose.clip(_with_count(base, count))


def _wave(rng: np.random.Generator, budget: int) -> ActionClip:
    hand = rng.choice(["left", "right", "both"])
    waves = int(rng.integers(2, 6))
    frequency = rng.uniform(1.8, 2.5)
    frames = _frames_for(1.2 + waves / frequency + 1.2, budget)
    t = _times(frames)
    raised = _hold(t, (0.2, 0.9), (frames / FPS - 1.0, frames / FPS - 0.3))
    pose = _Pose(frames)
    sides = [LEFT, RIGHT] if hand == "both" else [LEFT if hand == "left" else RIGHT]
    for side in sides:
        pose.shoulder(side, flexion=0.3 * raised, abduction=rng.uniform(1.3, 1.7) * raised)
        pose.elbow(side, flexion=0.2 * raised, outward=raised * (1.4 + 0.45 * np.sin(2 * np.pi * frequency * t)))
    pose.keep_feet_flat()
    if hand == "both":
        base = ["waves both hands", "waves with both arms", "raises both hands and waves them"]
    else:
        base = [
            f"waves {{poss}} {hand} hand",
            f"waves with {{poss}} {hand} hand",
            f"raises {{poss}} {hand} hand and waves",
            f"waves hello with {{poss}} {hand} arm",
        ]
    return pose.clip(base)


def _kick(rng: np.random.Generator, budget: int) -> ActionClip:
    side = LEFT if rng.random() < 0.5 else RIGHT
    frames, count, position, active = _cycles(rng, budget, rng.uniform(1.1, 1.4), (1, 3), lead=0.4)
    u = position % 1.0
    chamber = _bump(u, 0.05, 0.75) * active
    extend = _bump(u, 0.25, 0.6) * active
    pose = _Pose(frames)
    pose.hip(side, flexion=1.1 * chamber + 0.45 * extend)
    pose.knee(side, 1.5 * chamber - 1.4 * extend)
    pose.knee(-side, 0.15 * chamber)
    for arm in (LEFT, RIGHT):
        pose.shoulder(arm, abduction=0.45 * chamber, flexion=0.2 * chamber)
    pose.spine(lean=-0.25 * extend)
    pose.keep_feet_flat()
    pose.ankle(side, 0.6 * extend)
    name = _side_name(side)
    base = [
        f"kicks with {{poss}} {name} leg",
        f"kicks {{poss}} {name} foot forward",
        f"kicks forward with the {name} foot",
        f"does a kick with {{poss}} {name} leg",
    ]
    return pose.clip(_with_count(base, count))


def _turn(rng: np.random.Generator, budget: int) -> ActionClip:
    side = LEFT if rng.random() < 0.5 else RIGHT
    degrees = int(rng.choice([90, 180, 360]))
    frames = _frames_for(degrees / 90 * rng.uniform(0.9, 1.3) + 1.0, budget)
    t, env = _times(frames), _envelope(frames, 0.5)
    pose = _Pose(frames)
    phase = np.pi * 1.6 * t
    for leg, offset in ((LEFT, 0.0), (RIGHT, np.pi)):
        lift = np.maximum(0, np.sin(phase + offset)) * env
        pose.hip(leg, flexion=0.25 * lift)
        pose.knee(leg, 0.5 * lift)
    pose.keep_feet_flat()
    pose.yaw_rate += side * np.radians(degrees) / (frames / FPS) * env / env.mean()
    name = _side_name(side)
    base = {
        90: [f"turns {name}", f"turns to the {name}", f"turns ninety degrees to the {name}"],
        180: ["turns around", f"turns around to the {name}", "turns to face the other direction"],
        360: ["spins around in a full circle", "turns all the way around", f"does a full turn to the {name}"],
    }[degrees]
    return pose.clip(base)


def _sit(rng: np.random.Generator, budget: int) -> ActionClip:
    stand_up = rng.random() < 0.5
    down = rng.uniform(1.1, 1.6)
    seated = rng.uniform(1.0, 2.5)
    total = 0.3 + down + seated + (down + 0.3 if stand_up else 0.0)
    frames = _frames_for(total, budget)
    t = _times(frames)
    end = frames / FPS
    sitting = _hold(t, (0.3, 0.3 + down), (end - 0.3 - down, end - 0.3) if stand_up else (end + 1, end + 2))
    lean = _bump(t, 0.3, 0.3 + down) + (_bump(t, end - 0.3 - down, end - 0.3) if stand_up else 0.0)
    pose = _Pose(frames)
    for side in (LEFT, RIGHT):
        pose.hip(side, flexion=1.45 * sitting, abduction=0.1 * sitting)
        pose.knee(side, 1.5 * sitting)
        pose.shoulder(side, flexion=0.35 * sitting)
        pose.elbow(side, flexion=0.5 * sitting)
    pose.pelvis(tilt=0.15 * sitting)
    pose.spine(lean=0.45 * lean)
    pose.keep_feet_flat()
    if stand_up:
        base = ["sits down and then stands back up", "sits down and gets up again", "sits on a chair and stands up"]
    else:
        base = ["sits down", "sits down on a chair", "takes a seat", "lowers {poss} body and sits down"]
    return pose.clip(base)


def _crouch(rng: np.random.Generator, budget: int) -> ActionClip:
    squats = rng.random() < 0.6
    if squats:
        frames, count, position, active = _cycles(rng, budget, rng.uniform(1.4, 2.0), (2, 4))
        depth = _bump(position % 1.0, 0.0, 1.0) * active
    else:
        count = 1
        frames = _frames_for(rng.uniform(3.0, 5.0), budget)
        end = frames / FPS
        depth = _hold(_times(frames), (0.3, 1.3), (end - 1.3, end - 0.3))
    pose = _Pose(frames)
    for side in (LEFT, RIGHT):
        pose.hip(side, flexion=1.5 * depth, abduction=0.15 * depth)
        pose.knee(side, 2.1 * depth)
        pose.shoulder(side, flexion=1.3 * depth)
        pose.elbow(side, flexion=0.2 * depth)
    pose.pelvis(tilt=0.45 * depth)
    pose.keep_feet_flat()
    if squats:
        number = _NUMBERS[count]
        base = [f"does {number} squats", "does squats", f"squats down {_count_words(count)[0]}", "performs squats"]
    else:
        base = ["crouches down", "crouches down and stands back up", "squats down low and gets back up"]
    return pose.clip(base)


def _punch(rng: np.random.Generator, budget: int) -> ActionClip:
    hand = rng.choice(["left", "right", "both"])
    frames, count, position, active = _cycles(rng, budget, rng.uniform(0.6, 0.9), (1, 4), lead=0.6)
    guard = _hold(_times(frames), (0.1, 0.5), (frames / FPS - 0.5, frames / FPS - 0.1))
    strike = _bump(position % 1.0, 0.0, 0.7) * active
    cycle = np.floor(position).astype(int)
    pose = _Pose(frames)
    for side in (LEFT, RIGHT):
        if hand == "both":
            mine = strike * ((cycle % 2 == 0) == (side == LEFT))
        else:
            mine = strike * (side == (LEFT if hand == "left" else RIGHT))
        pose.shoulder(side, flexion=0.5 * guard + 1.0 * mine, abduction=0.2 * guard - 0.15 * mine)
        pose.elbow(side, flexion=2.0 * guard - 1.9 * mine)
    pose.spine(lean=0.1 * guard)
    for side in (LEFT, RIGHT):
        pose.knee(side, 0.2 * guard)
        pose.hip(side, flexion=0.1 * guard)
    pose.keep_feet_flat()
    if hand == "both":
        base = ["punches with both hands", "throws punches with both fists", "punches forward with both arms"]
    else:
        base = [
            f"punches with {{poss}} {hand} hand",
            f"throws a punch with {{poss}} {hand} fist",
            f"punches forward with the {hand} arm",
        ]
    return pose.clip(_with_count(base, count) if hand != "both" else base)


def _raise_arms(rng: np.random.Generator, budget: int) -> ActionClip:
    hand = rng.choice(["left", "right", "both", "both"])
    frames = _frames_for(rng.uniform(2.5, 4.5), budget)
    end = frames / FPS
    raised = _hold(_times(frames), (0.3, 1.2), (end - 1.2, end - 0.3))
    pose = _Pose(frames)
    sides = [LEFT, RIGHT] if hand == "both" else [LEFT if hand == "left" else RIGHT]
    for side in sides:
        pose.shoulder(side, flexion=2.8 * raised, abduction=0.15 * raised)
        pose.elbow(side, flexion=0.1 * raised)
    pose.keep_feet_flat()
    if hand == "both":
        base = ["raises both arms", "lifts both arms over {poss} head", "raises both hands up"]
    else:
        base = [
            f"raises {{poss}} {hand} arm",
            f"lifts {{poss}} {hand} arm up",
            f"raises {{poss}} {hand} hand above {{poss}} head",
        ]
    return pose.clip(base)


def _jumping_jacks(rng: np.random.Generator, budget: int) -> ActionClip:
    frames, count, position, active = _cycles(rng, budget, rng.uniform(0.8, 1.1), (2, 5))
    u = position % 1.0
    spread = _bump(u, 0.0, 1.0) * active
    hop = (_bump(u, 0.05, 0.3) + _bump(u, 0.55, 0.8)) * active
    pose = _Pose(frames)
    for side in (LEFT, RIGHT):
        pose.hip(side, abduction=0.32 * spread)
        pose.knee(side, 0.2 * hop)
        pose.shoulder(side, abduction=2.9 * spread)
    pose.keep_feet_flat()
    pose.airborne += 0.08 * hop
    number = _NUMBERS.get(count, "")
    base = ["does jumping jacks", f"does {number} jumping jacks", "performs jumping jacks"]
    return pose.clip(base)


def _bow(rng: np.random.Generator, budget: int) -> ActionClip:
    frames, count, position, active = _cycles(rng, budget, rng.uniform(1.8, 2.6), (1, 2))
    depth = _bump(position % 1.0, 0.0, 1.0) * active * rng.uniform(0.8, 1.1)
    pose = _Pose(frames)
    pose.pelvis(tilt=0.45 * depth)
    pose.spine(lean=0.6 * depth)
    pose.head(nod=0.3 * depth)
    for side in (LEFT, RIGHT):
        pose.hip(side, flexion=0.45 * depth)
        pose.shoulder(side, flexion=0.2 * depth)
    pose.keep_feet_flat()
    base = ["bows", "bows forward", "takes a bow", "bends forward and stands back up"]
    return pose.clip(_with_count(base, count))


ACTIONS: dict[str, Callable[[np.random.Generator, int], ActionClip]] = {
    "walk": _walk,
    "run": _run,
    "jump": _jump,
    "wave": _wave,
    "kick": _kick,
    "turn": _turn,
    "sit": _sit,
    "crouch": _crouch,
    "punch": _punch,
    "raise_arms": _raise_arms,
    "jumping_jacks": _jumping_jacks,
    "bow": _bow,
}


def _idle(frames: int) -> ActionClip:
    pose = _Pose(frames)
    pose.spine(lean=0.02 * np.sin(2 * np.pi * 0.3 * _times(frames)))
    pose.keep_feet_flat()
    return pose.clip([])


def _concatenate(clips: list[ActionClip]) -> ActionClip:
    return ActionClip(
        angles=np.concatenate([c.angles for c in clips]),
        yaw_rate=np.concatenate([c.yaw_rate for c in clips]),
        airborne=np.concatenate([c.airborne for c in clips]),
        push=np.concatenate([c.push for c in clips]),
        momentum=np.concatenate([c.momentum for c in clips]),
        support=np.concatenate([c.support for c in clips]),
        phrases=[],
    )


def _forward_kinematics(angles: np.ndarray, heading: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions (T, 22, 3) relative to the root from local angles (T, 22, 3) and headings (T,)."""
    local = euler_to_matrix(torch.from_numpy(angles[..., [YAW, ROLL, PITCH]]), "YZX").numpy()
    heading_angles = np.stack((heading, np.zeros_like(heading), np.zeros_like(heading)), axis=-1)
    world = euler_to_matrix(torch.from_numpy(heading_angles), "YZX").numpy()
    parents = T2M_SKELETON.parents
    rotations = [world @ local[:, PELVIS]]
    positions = [np.zeros((len(angles), 3))]
    for joint in range(1, 22):
        parent = parents[joint]
        positions.append(positions[parent] + rotations[parent] @ offsets[joint])
        rotations.append(rotations[parent] @ local[:, joint])
    return np.stack(positions, axis=1)


def _place_on_ground(clip: ActionClip, offsets: np.ndarray, heading0: float) -> np.ndarray:
    """World joint positions (T, 22, 3): heading from the yaw rate, root from foot anchoring / flight."""
    heading = heading0 + np.concatenate(([0.0], np.cumsum(clip.yaw_rate[1:]) / FPS))
    relative = _forward_kinematics(clip.angles, heading, offsets)
    feet = relative[:, FOOT_JOINTS]  # (T, 4, 3): left ankle, left toe, right ankle, right toe
    left_low, right_low = feet[:, :2, 1].min(1), feet[:, 2:, 1].min(1)
    lowest = np.where(left_low <= right_low, 0, 1)
    anchor = 2 * np.where(clip.support >= 0, clip.support, lowest)  # index of the planted ankle in ``feet``
    frames = np.arange(len(relative))
    anchored = feet[frames, anchor, :][:, [0, 2]]
    previous = feet[np.maximum(frames - 1, 0), anchor, :][:, [0, 2]]
    step = previous - anchored  # keep the anchored ankle still in the world
    grounded = clip.airborne <= 0
    last_ground = np.maximum.accumulate(np.where(grounded, frames, 0))
    cos, sin = np.cos(heading), np.sin(heading)
    push = np.stack((cos * clip.push[:, 0] + sin * clip.push[:, 1], -sin * clip.push[:, 0] + cos * clip.push[:, 1]), -1)
    step = np.where(grounded[:, None], step, clip.momentum[:, None] * step[last_ground] + push / FPS)
    step[0] = 0.0
    root_xz = np.cumsum(step, axis=0)
    root_y = -np.minimum(left_low, right_low) + clip.airborne
    root = np.stack((root_xz[:, 0], root_y, root_xz[:, 1]), axis=-1)
    return relative + root[:, None]


@dataclass
class SyntheticMotion:
    """A generated motion: joints (T, 22, 3) in metres (Y up), its captions and action names."""

    joints: np.ndarray
    captions: list[Caption]
    actions: list[str]


def _body_offsets(rng: np.random.Generator) -> np.ndarray:
    """Rest offsets (22, 3) of a random, left/right symmetric body around the t2m proportions."""
    factors = rng.uniform(0.97, 1.03, size=22)
    factors = (factors + factors[list(T2M_SKELETON.mirror_joints)]) / 2
    symmetric = (T2M_SKELETON.bone_lengths + T2M_SKELETON.bone_lengths[list(T2M_SKELETON.mirror_joints)]) / 2
    return _REST_DIRECTIONS * (symmetric * factors * rng.uniform(0.9, 1.1))[:, None]


def _add_style(clip: ActionClip, rng: np.random.Generator) -> None:
    """Per-motion posture: arms slightly out and bent, small lean and head tilt."""
    pose = _Pose(clip.frames)
    for side in (LEFT, RIGHT):
        pose.shoulder(side, abduction=rng.uniform(0.05, 0.15))
        pose.elbow(side, flexion=rng.uniform(0.05, 0.25))
    pose.spine(lean=rng.uniform(-0.05, 0.08))
    pose.head(nod=rng.uniform(-0.1, 0.1))
    clip.angles += pose.angles


def _pick_phrases(phrases: list[str], rng: np.random.Generator, count: int) -> list[str]:
    order = rng.permutation(len(phrases))
    return [phrases[i] for i in order[: min(count, len(phrases))]]


def generate_motion(rng: np.random.Generator, actions: tuple[str, ...] | None = None) -> SyntheticMotion:
    """One random motion of 41..197 joint frames (40..196 feature frames) at 20 fps.

    Args:
        rng: the random generator; the same generator state gives the same motion.
        actions: names from ``ACTIONS`` to draw from (default all); two-action motions draw both from it.
    """
    names = list(ACTIONS) if actions is None else list(actions)
    unknown = set(names) - set(ACTIONS)
    if not names or unknown:
        raise ValueError(f"actions must be a non-empty subset of {sorted(ACTIONS)}, got {actions!r}")
    count = 2 if rng.random() < 0.3 else 1
    chosen = [names[i] for i in rng.choice(len(names), size=count, replace=len(names) < count)]
    clips = [ACTIONS[name](rng, MAX_FRAMES // count) for name in chosen]
    bounds = np.cumsum([0] + [c.frames for c in clips])
    if bounds[-1] < MIN_FRAMES:
        clips.append(_idle(MIN_FRAMES - int(bounds[-1])))
    motion = _concatenate(clips)
    _add_style(motion, rng)
    with single_threaded():
        joints = _place_on_ground(motion, _body_offsets(rng), heading0=rng.uniform(-np.pi, np.pi))
    joints = joints + np.array([rng.uniform(-2, 2), 0.0, rng.uniform(-2, 2)])

    if count == 1:
        captions = [make_caption(p, rng) for p in _pick_phrases(clips[0].phrases, rng, 3)]
    else:
        first, second = (_pick_phrases(c.phrases, rng, 3) for c in clips[:2])
        joiners = ("{} and then {}", "{}, then {}", "first {} and then {}")
        captions = [
            make_caption(joiners[i % len(joiners)].format(a, b), rng)
            for i, (a, b) in enumerate(zip(first, second, strict=False))
        ]
        for clip_phrases, start, end in ((first, bounds[0], bounds[1]), (second, bounds[1], bounds[2])):
            captions.append(make_caption(clip_phrases[0], rng, start=start / FPS, end=end / FPS))
    return SyntheticMotion(joints.astype(np.float32), captions, chosen)


def build_synthetic_dataset(
    out_dir: str | Path,
    num_motions: int = 300,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    actions: tuple[str, ...] | None = None,
) -> Path:
    """Generate ``num_motions`` motions and write them in the HumanML3D folder layout.

    Writes ``new_joints/`` (the joints recovered from the features, as HumanML3D does), ``new_joint_vecs/``
    (263-d features), ``texts/``, ``train.txt`` / ``val.txt`` / ``test.txt`` (plus ``train_val.txt`` and
    ``all.txt``), and ``Mean.npy`` / ``Std.npy`` over all motions (as ``cal_mean_variance`` does; a feature
    group that is constant in a very small build, such as foot contacts, gets std 1).
    Ids are ``000000``, ``000001``, ... The same arguments give byte-identical files.

    Returns the output folder.
    """
    if not isinstance(num_motions, int) or num_motions < 3:
        raise ValueError(f"num_motions must be an integer >= 3 (one per split at least), got {num_motions!r}")
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions <= 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be three positive numbers summing to 1, got {split_fractions!r}")
    out = Path(out_dir)
    for folder in ("new_joints", "new_joint_vecs", "texts"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids, all_features = [], []
    with single_threaded():
        for index in range(num_motions):
            motion = generate_motion(rng, actions)
            features = extract_features(motion.joints, T2M_SKELETON, fix_heading_wrap=True)
            motion_id = f"{index:06d}"
            np.save(out / "new_joint_vecs" / f"{motion_id}.npy", features)
            np.save(out / "new_joints" / f"{motion_id}.npy", recover_from_ric(features))
            lines = [format_caption_line(caption) for caption in motion.captions]
            (out / "texts" / f"{motion_id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            ids.append(motion_id)
            all_features.append(features)
    save_mean_std(out, *compute_mean_std(all_features, constant_std=1.0))

    order = [ids[i] for i in rng.permutation(num_motions)]
    n_train = max(1, int(round(fractions[0] * num_motions)))
    n_val = max(1, int(round(fractions[1] * num_motions)))
    n_train = min(n_train, num_motions - n_val - 1)
    splits = {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }
    splits["train_val"] = sorted(splits["train"] + splits["val"])
    splits["all"] = list(ids)
    for name, members in splits.items():
        (out / f"{name}.txt").write_text("\n".join(members) + "\n", encoding="utf-8")
    return out
