"""Policy evaluation: complete episodes, task metrics, optional offscreen video.

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

from robolearn.checkpoint import load_checkpoint
from pydantic import ValidationError

from robolearn.config import Config, ConfigError, RandomizationConfig, Range, read_yaml, validate_config
from robolearn.models import ActorCritic


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> tuple[ActorCritic, Config, dict[str, Any]]:
    """Model, config and raw state of a checkpoint (file or run directory)."""
    from robolearn.runner import build_model

    state = load_checkpoint(path, map_location=device)
    config = validate_config(state["config"], source=state["path"])
    model = build_model(config, state["obs_dims"], state["action_dim"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state


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
        ranges = (state.get("randomization") or {}).get("adr", {}).get("ranges")
        if ranges is not None:
            params = {}
            for (name, param), (lo, hi) in zip(section.params.items(), ranges):
                params[name] = param.model_copy(update={"init_range": Range(lo=lo, hi=hi), "limits": None})
            section = section.model_copy(update={"params": params})
        return section
    data = read_yaml(spec)
    unknown = set(data) - {"params", "adr"}
    if unknown:
        raise ConfigError(f"{spec}: unknown key {sorted(unknown)[0]} (a ranges file holds params:)")
    try:
        return RandomizationConfig.model_validate({"params": data.get("params", {}), "adr": frozen})
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{spec}: {loc}: {first['msg'].replace('Value error, ', '')}") from None


class VideoRecorder:
    """Writes frames of one env with a small overlay (step, reward, return, success) to an MP4."""

    def __init__(self, path: str | Path, fps: float, size: int = 480):
        import cv2

        self.cv2, self.path, self.size = cv2, Path(path), size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
        if not self.writer.isOpened():
            raise RuntimeError(f"{self.path}: cannot open an MP4 writer")
        self.frames = 0

    def add(self, rgb: np.ndarray, lines: list[str]) -> None:
        frame = np.ascontiguousarray(rgb[..., ::-1])  # RGB -> BGR
        for i, text in enumerate(lines):
            y = 22 + 22 * i
            self.cv2.putText(frame, text, (10, y), self.cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, self.cv2.LINE_AA)
            self.cv2.putText(frame, text, (10, y), self.cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1,
                             self.cv2.LINE_AA)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


@torch.inference_mode()
def evaluate(model: ActorCritic, env, episodes: int, deterministic: bool = True,
             video: str | Path | None = None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Run ``episodes`` complete episodes; the mean of every episode metric.

    ``model`` is an actor-critic (a recurrent one acts through ``actor_step`` with its state zeroed
    at each episode start) or any object with ``act_deterministic(obs) -> actions``."""
    n = env.num_envs
    per_env = math.ceil(episodes / n)
    done_count = np.zeros(n, np.int64)
    records: list[tuple[int, int, dict[str, float]]] = []
    recorder = VideoRecorder(video, fps=1.0 / env.control_dt) if video else None
    camera = "top" if recorder and _has_camera(env, "top") else -1
    overlay = {"step": 0, "return": 0.0, "reward": 0.0}
    final_frame: list[np.ndarray] = []

    def render() -> np.ndarray:
        return env.render_env(0, recorder.size, recorder.size, camera=camera)

    def record_frame(frame: np.ndarray, success: bool = False) -> None:
        if done_count[0] < per_env:
            recorder.add(frame, [f"step {overlay['step']}", f"reward {overlay['reward']:+.3f}",
                                 f"return {overlay['return']:+.2f}", "success" if success else ""])

    def record_final_frame(ids: np.ndarray) -> None:  # env 0's last state, before its reset
        if ids[0] == 0:
            final_frame.append(render())

    if recorder is not None:
        env.before_reset_hooks.append(record_final_frame)
    state = None
    if getattr(model, "is_recurrent", False):
        state = [torch.zeros(model.rnn_layers, n, model.rnn_hidden, device=device) for _ in range(model.num_states)]
    obs, _ = env.reset()
    try:
        while (done_count < per_env).any():
            if recorder is not None:
                record_frame(render())
            tensors = {g: torch.from_numpy(v).to(device) for g, v in obs.items()}
            if state is not None:  # a recurrent actor, run as the robot runs it
                mean, *state = model.actor_step(tensors["policy"], *state)
                actions = mean if deterministic else mean + model.log_std.exp() * torch.randn_like(mean)
            else:
                actions = model.act_deterministic(tensors) if deterministic else model.act(tensors)[0]
            overlay["step"] += 1
            obs, reward, terminated, truncated, info = env.step(actions.cpu().numpy())
            if state is not None:  # episodes that ended start the next one from a zero state
                keep = torch.from_numpy(~(terminated | truncated)).to(device, torch.float32)[:, None]
                state = [s * keep for s in state]
            overlay["reward"] = float(reward[0])
            overlay["return"] += float(reward[0])
            if final_frame:
                record_frame(final_frame.pop(), success=bool(terminated[0]))
            if "episode" in info:
                for i in np.flatnonzero(info["_episode"]):
                    if done_count[i] < per_env:
                        records.append((int(done_count[i]), int(i), {k: float(v[i]) for k, v in info["episode"].items()}))
                    done_count[i] += 1
                if info["_episode"][0]:
                    overlay.update(step=0, reward=0.0, **{"return": 0.0})
    finally:
        if recorder is not None:
            recorder.close()
            env.before_reset_hooks.remove(record_final_frame)
    records.sort(key=lambda r: (r[0], r[1]))
    kept = [r[2] for r in records[:episodes]]
    result: dict[str, Any] = {"episodes": len(kept)}
    for key in kept[0]:
        result[f"{key}_mean"] = float(np.mean([e[key] for e in kept]))
    result["success_rate"] = result.pop("success_mean")
    result["episode_len"] = result.pop("length_mean")
    if video:
        result["video"] = str(video)
        result["video_frames"] = recorder.frames
    return result


def _has_camera(env, name: str) -> bool:
    import mujoco

    return mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, name) >= 0

