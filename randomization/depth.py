"""How real depth cameras fail, as randomization targets on a task's depth-image terms.

A task with a depth image declares it in ``env.obs_term_info[term]`` (``invalid_value``, ``near``,
``far`` and the ``camera`` that takes it; its shape is the observation layout's); the targets below select such terms
(``select: {obs_terms: [depth]}``) and act on the policy group only (the critic reads no pixels):

* ``depth_noise``      per-pixel Gaussian noise growing with range, sigma = value * d^2 (metres; the
                       quadratic law of stereo and structured-light sensors: 0.01 gives 4 cm at 2 m);
* ``depth_dropout``    probability that a pixel has no return (reads the invalid value);
* ``depth_edge_holes`` probability that a pixel on a depth edge (a jump of more than 10% of its depth
                       to a neighbour) has no return, as at object silhouettes;
* ``depth_latency``    whole control steps the image lags the rest of the observation (int);
* ``camera_pitch``     rad added to the camera's pitch for the episode (mount tolerance; positive
                       tilts it down), written into the per-env camera pose at reset.

Noisy values outside ``[near, far]`` become invalid, as the sensor clips them. Every draw comes
from the randomizer's RNG; with every range at its nominal point the image is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

if TYPE_CHECKING:
    from robolearn.envs.core import BatchedMujocoEnv

DEPTH_TARGETS = ("depth_noise", "depth_dropout", "depth_edge_holes", "depth_latency", "camera_pitch")
EDGE_JUMP = 0.1  # a depth edge: a neighbour differs by more than this fraction of the pixel's depth


def image_terms(env: "BatchedMujocoEnv") -> dict[str, dict[str, Any]]:
    """The env's depth-image terms and what it says about them (``obs_term_info``)."""
    info = getattr(env, "obs_term_info", {})
    return {term: meta for term, meta in info.items() if "invalid_value" in meta and "camera" in meta}


class DepthEffects:
    """The depth targets of one randomizer: ``params`` lists (parameter index, target, term)."""

    def __init__(self, env: "BatchedMujocoEnv", params: list[tuple[int, str, str]], max_latency: int):
        self.env, self.params = env, params
        self.terms = sorted({term for _, _, term in params})
        meta = image_terms(env)
        self.meta = {term: meta[term] for term in self.terms}
        layout = env.obs_layout["policy"]
        n = env.num_envs
        #: per term, the clean images of the last ``max_latency + 1`` steps, newest first
        self.history = {term: np.zeros((n, max_latency + 1, layout.widths[term]), np.float32) for term in self.terms}
        self.fresh = np.ones(n, bool)  # envs whose history starts over at the next observation
        self._camera = {term: env.model.camera(self.meta[term]["camera"]).id for term in self.terms}

    # ------------------------------------------------------------------ reset
    def on_reset(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Per-episode effects: the camera pose (``camera_pitch``); the latency history restarts."""
        self.fresh[ids] = True
        quat = None
        for i, target, term in self.params:
            if target != "camera_pitch":
                continue
            if quat is None:
                quat = self.env.model_field("cam_quat")
            cam = self._camera[term]
            nominal = self.env.nominal_field("cam_quat")[cam]
            for row, env_id in enumerate(ids):
                # tilting down turns the optical axis (-z) toward -y: a rotation about the camera's x
                angle = -values[row, i]
                turn = np.array([np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0])
                mujoco.mju_mulQuat(quat[env_id, cam], nominal, turn)

    # ------------------------------------------------------------------ per step
    def process(self, policy: np.ndarray, values: np.ndarray, rng: np.random.Generator, advance: bool = True) -> None:
        """Apply the sensor effects to the image terms of the policy group, in place (``advance``:
        a new control step's image, see :meth:`Randomizer.process_obs`)."""
        layout = self.env.obs_layout["policy"]
        for term in self.terms:
            sl, meta = layout.slices[term], self.meta[term]
            image = policy[:, sl]
            history = self.history[term]
            if advance:
                history[:, 1:] = history[:, :-1]
            history[:, 0] = image
            history[self.fresh] = image[self.fresh, None]
            invalid, near, far = float(meta["invalid_value"]), float(meta["near"]), float(meta["far"])
            holes = np.zeros(image.shape, bool)
            for i, target, t in self.params:
                if t != term:
                    continue
                v = values[:, i]
                if target == "depth_latency":
                    image = history[np.arange(len(image)), v.astype(np.int64)]
                elif target == "depth_noise":
                    valid = image != invalid
                    noisy = image + rng.standard_normal(image.shape).astype(np.float32) * (v[:, None] * image ** 2)
                    clipped = (noisy < near) | (noisy > far)
                    image = np.where(valid, noisy, image)
                    holes |= valid & clipped
                elif target == "depth_dropout":
                    holes |= rng.random(image.shape) < v[:, None]
                elif target == "depth_edge_holes":
                    edges = depth_edges(image, layout.shapes[term], invalid)
                    holes |= edges & (rng.random(image.shape) < v[:, None])
            policy[:, sl] = np.where(holes, invalid, image)
        self.fresh[:] = False

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"history": {t: h.copy() for t, h in self.history.items()}, "fresh": self.fresh.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for term, value in state["history"].items():
            self.history[term][...] = np.asarray(value)
        self.fresh[...] = np.asarray(state["fresh"])


def depth_edges(image: np.ndarray, shape: list[int] | tuple[int, ...], invalid: float) -> np.ndarray:
    """Pixels (N, H*W) whose depth jumps by more than ``EDGE_JUMP`` of their own to a right or lower
    neighbour, or that border an invalid pixel."""
    h, w = int(shape[0]), int(shape[1])
    img = image.reshape(-1, h, w)
    valid = img != invalid
    edge = np.zeros(img.shape, bool)
    for axis in (1, 2):
        a = np.take(img, np.arange(img.shape[axis] - 1), axis=axis)
        b = np.take(img, np.arange(1, img.shape[axis]), axis=axis)
        va = np.take(valid, np.arange(img.shape[axis] - 1), axis=axis)
        vb = np.take(valid, np.arange(1, img.shape[axis]), axis=axis)
        jump = (np.abs(a - b) > EDGE_JUMP * np.minimum(a, b)) | (va != vb)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= jump
        edge[tuple(hi)] |= jump
    return (edge & valid).reshape(image.shape)
