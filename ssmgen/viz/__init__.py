"""ssmgen.viz: visualisation and export helpers.

- ``motion``: skeleton animations (GIF / MP4) and joint exports (.npy, BVH).
"""

from .motion import render_motion_frames, save_bvh, save_joints_npy, save_motion_animation

__all__ = ["render_motion_frames", "save_bvh", "save_joints_npy", "save_motion_animation"]
