"""Evaluation: a policy run for complete episodes, with task metrics and an optional offscreen video.

Episodes are counted without the short-episode bias of "first N to finish": each of the M envs
contributes its first ``ceil(N / M)`` episodes, and the first N of those (by episode index, then
env) are kept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from robolearn.checkpoint import adr_ranges
from robolearn.config import Config, ConfigError, RandomizationConfig, Range, first_error, read_yaml
from robolearn.envs.core import finished_episodes
from robolearn.models import Policy


class VideoError(RuntimeError):
    """The video cannot be written where asked (one-line message naming the path)."""


def eval_randomization(spec: str, config: Config, state: dict[str, Any]) -> RandomizationConfig | None:
    """The randomization an evaluation runs under, frozen (no ADR updates, no boundary episodes):

    ``nominal``  none (the task as specified);
    ``train``    the checkpoint's parameters at the ADR ranges the run had reached;
    a path       a YAML file with a ``params:`` mapping (the schema of ``randomization.params``),
                 sampled uniformly over each ``init_range``: conditions a policy may never have seen.
    """
    frozen = {"enabled": False, "update": False}
    if spec == "nominal":
        return None
    if spec == "train":
        section = config.randomization.model_copy(update={"adr": config.randomization.adr.model_copy(update=frozen)})
        ranges = adr_ranges(state)
        if ranges is not None:
            params = {}
            for (name, param), (lo, hi) in zip(section.params.items(), ranges):
                reached = {"init_range": Range(lo=lo, hi=hi), "limits": None, "stage": None}
                params[name] = param.model_copy(update=reached)
            section = section.model_copy(update={"params": params})
        return section
    data = read_yaml(spec)
    unknown = set(data) - {"params", "adr"}
    if unknown:
        raise ConfigError(f"{spec}: unknown key {sorted(unknown)[0]} (a ranges file holds params:)")
    try:
        return RandomizationConfig.model_validate({"params": data.get("params", {}), "adr": frozen})
    except ValidationError as err:
        raise ConfigError(f"{spec}: {first_error(err)}") from None


#: the video overlay: pixels per line, margin, font scale and the band's colour (BGR)
LINE_HEIGHT, MARGIN, FONT_SCALE, BAND_COLOUR = 22, 8, 0.55, (32, 32, 32)


class VideoRecorder:
    """Writes frames of one env with a small overlay (step, reward, return, success) to an MP4.

    The overlay's lines are drawn in white on an opaque dark band in the top left corner, one line
    per slot at fixed positions; the band only grows within a video. Thin text straight on the
    scene is what made it illegible: over a light, textured floor the MPEG-4 encoder smears each
    changing number into the next frames, so a line looked drawn over itself."""

    def __init__(self, path: str | Path, fps: float, size: int = 480, width: int | None = None):
        import cv2

        self.cv2, self.path, self.size = cv2, Path(path), size
        self.width = width or size
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab"):  # OpenCV would fail silently on an unwritable path
                pass
        except OSError as err:
            raise VideoError(f"{self.path}: cannot write the video here ({err.strerror or err})") from None
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (self.width, size))
        if not self.writer.isOpened():
            raise VideoError(f"{self.path}: cannot open an MP4 writer (is the file name an .mp4?)")
        self.frames = 0
        self.band = (0, 0)  # width, height of the overlay's band so far

    def add(self, rgb: np.ndarray, lines: list[str]) -> None:
        frame = np.ascontiguousarray(rgb[..., ::-1])  # RGB -> BGR
        self.band = draw_overlay(frame, lines, self.band)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def draw_overlay(frame: np.ndarray, lines: list[str], band: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """Draw ``lines`` in white into ``frame`` (BGR, in place), one per slot of ``LINE_HEIGHT``
    pixels, on a dark band in the top left corner at least ``band`` (width, height) large; the
    band drawn."""
    import cv2

    widths = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)[0][0] for text in lines]
    band = (max(band[0], max(widths, default=0) + 2 * MARGIN), max(band[1], LINE_HEIGHT * len(lines) + MARGIN))
    cv2.rectangle(frame, (0, 0), (band[0] - 1, band[1] - 1), BAND_COLOUR, -1)
    for i, text in enumerate(lines):
        cv2.putText(frame, text, (MARGIN, LINE_HEIGHT * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return band


@torch.inference_mode()
def run_episodes(policy: Policy, env, episodes: int, deterministic: bool = True,
                 video: str | Path | None = None, device: str | torch.device = "cpu",
                 video_camera: str | None = None, record: str | Path | None = None) -> dict[str, Any]:
    """Run ``episodes`` complete episodes of ``policy`` in ``env``; the mean of every episode metric.
    ``video`` renders env 0 to an MP4 through ``video_camera`` (a camera of the task's model;
    default the task's own, :func:`video_camera`).

    The policy acts through its interface (:mod:`robolearn.models.policy`): ``act_inference``
    (the mean action, as deployed) or, with ``deterministic=False``, sampled ``act``; its state
    starts at ``initial_state`` and is reset where episodes end. ``record``: write every policy
    observation the policy acted on (the counted episodes' steps) to this ``.npz`` (``obs``
    (steps, obs_dim), ``terms`` the term names), the log ``robolearn obs-report`` reads."""
    n = env.num_envs
    per_env = math.ceil(episodes / n)
    done_count = np.zeros(n, np.int64)
    records: list[tuple[int, int, dict[str, float]]] = []
    recorder = _EpisodeVideo(env, video, per_env, camera=video_camera) if video else None
    recorded: list[np.ndarray] = []
    state = policy.initial_state(n)
    obs, _ = env.reset()
    try:
        while (done_count < per_env).any():
            if recorder is not None:
                recorder.before_step(done_count)
            if record is not None:
                recorded.append(obs["policy"][done_count < per_env])
            tensors = {g: torch.from_numpy(v).to(device) for g, v in obs.items()}
            if deterministic:
                actions, state = policy.act_inference(tensors, state)
            else:
                step = policy.act(tensors, state)
                actions, state = step.actions, step.state
            obs, reward, terminated, truncated, info = env.step(actions.cpu().numpy())
            dones = terminated | truncated
            state = policy.reset_state(state, torch.from_numpy(dones).to(device))
            ids, metrics = finished_episodes(info)
            if recorder is not None:
                success = bool(dones[0]) and bool(info["episode"]["success"][0])
                recorder.after_step(float(reward[0]), success, bool(dones[0]), done_count)
            for j, i in enumerate(ids):
                if done_count[i] < per_env:
                    records.append((int(done_count[i]), int(i), {k: float(v[j]) for k, v in metrics.items()}))
                done_count[i] += 1
    finally:
        if recorder is not None:
            recorder.close()
    records.sort(key=lambda r: (r[0], r[1]))
    kept = [r[2] for r in records[:episodes]]
    result: dict[str, Any] = {"episodes": len(kept)}
    for key in kept[0]:
        result[f"{key}_mean"] = float(np.mean([e[key] for e in kept]))
    result["success_rate"] = result.pop("success_mean")
    result["episode_len"] = result.pop("length_mean")
    if video:
        result["video"] = str(video)
        result["video_frames"] = recorder.recorder.frames
    if record is not None:
        result["record"], result["recorded_steps"] = str(record), int(sum(len(r) for r in recorded))
        write_obs_log(record, np.concatenate(recorded), list(env.obs_layout["policy"].widths))
    return result


def write_obs_log(path: str | Path, obs: np.ndarray, terms: list[str]) -> None:
    """An observation log (``obs`` (steps, obs_dim) float32 and the term names) as ``.npz``."""
    import io

    from robolearn.files import write_atomic

    buffer = io.BytesIO()
    np.savez_compressed(buffer, obs=obs.astype(np.float32), terms=np.array(terms))
    write_atomic(Path(path), buffer.getvalue())


class _EpisodeVideo:
    """Env 0's first ``per_env`` episodes as a video: a frame before every step and the final
    frame of each episode (rendered before the env resets), with step, reward, return and success.
    A task whose policy sees images (a depth camera) gets them beside the view, as the policy saw
    them (noise and holes included; colour from near to far, invalid pixels black)."""

    def __init__(self, env, path: str | Path, per_env: int, size: int = 480, camera: str | None = None):
        self.env, self.per_env = env, per_env
        self.camera = video_camera(env, camera)
        self.images = env.obs_layout["policy"].images
        self.info = getattr(env, "obs_term_info", {})
        width = size + sum(int(round(size * shape[1] / shape[0])) for shape in self.images.values())
        self.recorder = VideoRecorder(path, fps=1.0 / env.control_dt, size=size, width=width)
        self.overlay = {"step": 0, "return": 0.0, "reward": 0.0}
        self.final_frame: list[np.ndarray] = []
        env.before_reset_hooks.append(self._record_final_frame)

    def _render(self) -> np.ndarray:
        size = self.recorder.size
        view = self.env.render_env(0, size, size, camera=self.camera)
        if not self.images:
            return view
        cv2, policy = self.recorder.cv2, self.env.latest_obs("policy")
        panels = [view]
        for term, shape in self.images.items():
            image = policy[0, self.env.obs_layout["policy"].slices[term]].reshape(shape)
            meta = self.info.get(term, {})
            near, far = float(meta.get("near", image.min())), float(meta.get("far", max(image.max(), 1e-6)))
            scaled = np.clip((image - near) / max(far - near, 1e-6), 0.0, 1.0)
            coloured = cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
            if "invalid_value" in meta:
                coloured[image == meta["invalid_value"]] = 0
            width = int(round(size * shape[1] / shape[0]))
            panels.append(cv2.resize(coloured, (width, size), interpolation=cv2.INTER_NEAREST))
        return np.concatenate(panels, axis=1)

    def _record_final_frame(self, ids: np.ndarray) -> None:  # env 0's last state, before its reset
        if ids[0] == 0:
            self.final_frame.append(self._render())

    def _add(self, frame: np.ndarray, done_count: np.ndarray, success: bool = False) -> None:
        if done_count[0] < self.per_env:
            o = self.overlay
            self.recorder.add(frame, [f"step {o['step']}", f"reward {o['reward']:+.3f}", f"return {o['return']:+.2f}",
                                      "success" if success else ""])

    def before_step(self, done_count: np.ndarray) -> None:
        self._add(self._render(), done_count)
        self.overlay["step"] += 1

    def after_step(self, reward: float, success: bool, done: bool, done_count: np.ndarray) -> None:
        """After a step: env 0's reward, whether its episode ended in success, whether it ended."""
        self.overlay["reward"] = reward
        self.overlay["return"] += reward
        if self.final_frame:
            self._add(self.final_frame.pop(), done_count, success=success)
        if done:
            self.overlay.update(step=0, reward=0.0, **{"return": 0.0})

    def close(self) -> None:
        self.recorder.close()
        self.env.before_reset_hooks.remove(self._record_final_frame)


def video_camera(env, name: str | None = None) -> str | int:
    """The camera a video of ``env`` renders through: ``name`` (:class:`VideoError` naming the
    model's cameras if it has no such camera), else the task's ``video_camera`` where the model
    has it, else the free camera (-1)."""
    cameras = [env.model.camera(i).name for i in range(env.model.ncam)]
    if name is not None:
        if name not in cameras:
            raise VideoError(f"camera {name!r}: the task's model has no such camera (its cameras: "
                             f"{', '.join(cameras) or 'none'})")
        return name
    default = getattr(env, "video_camera", None)
    return default if default in cameras else -1
