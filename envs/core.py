"""Batched MuJoCo env core: one object simulates N robots on ``mujoco.batch.Batch``.

A task subclasses :class:`BatchedMujocoEnv` and fills in four hooks, each working on all envs at
once with numpy (no Python loop over envs):

* ``_reset_envs(ids)``   write the initial state of the envs ``ids`` (after a physics reset);
* ``_apply_actions(a)``  turn normalised actions in [-1, 1] into ``ctrl``;
* ``_evaluate(a)``       after the physics step: ``(reward, terminated)`` and per-step bookkeeping;
* ``_observe()``         every observation term, name -> (N, width); the core packs them into the
                         groups ``{"policy": (N, Dp), "critic": (N, Dc)}``.

Domain randomization (``robolearn.randomization``) plugs in here: sampled per env at reset through
per-env model fields and the task's ``layout_params``, per-step effects on actions and the policy
observations inside ``step``; the critic group gains a ``randomization`` term with every env's
parameter values.

The core owns the step loop, the time limit, per-episode metrics and SAME_STEP autoreset: the
observation returned for a finished env is already the first one of its next episode, and
``info["final_obs"]`` holds, for *every* env, the true next observation of this step (the
pre-reset one for finished envs), so a trainer bootstraps truncated episodes with
``V(info["final_obs"])`` in one batched call. ``info["_final_obs"]`` marks the envs that reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import gymnasium
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode
from mujoco import batch as mjbatch

if TYPE_CHECKING:
    from robolearn.config import RandomizationConfig

_STAGE_VEL = mujoco.mjtStage.mjSTAGE_VEL


class ObsLayout:
    """Named slices of one flat observation group: ``terms`` maps name -> width, in order."""

    def __init__(self, terms: dict[str, int]):
        self.widths = dict(terms)
        self.slices: dict[str, slice] = {}
        start = 0
        for name, width in terms.items():
            self.slices[name] = slice(start, start + width)
            start += width
        self.size = start

    def pack(self, out: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """Write each term's (N, width) (or (N,)) values into its slice of ``out``."""
        for name, sl in self.slices.items():
            value = values[name]
            out[:, sl] = value.reshape(out.shape[0], -1)
        return out


class BatchedMujocoEnv(gymnasium.vector.VectorEnv):
    """Base of every robolearn task: N simulations stepped together, SAME_STEP autoreset."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}
    #: forward stages computed after each physics step: VEL makes site/body poses and velocity
    #: sensors current; a task that reads only qpos, qvel and in-step sensors can skip it (NONE)
    step_stage: int = _STAGE_VEL
    #: per-episode metrics every task reports in ``info["episode"]`` (tasks extend the tuple)
    episode_metrics: tuple[str, ...] = ("return", "length", "success")

    def __init__(self, model: mujoco.MjModel, num_envs: int, frame_skip: int, max_episode_steps: int,
                 obs_terms: dict[str, dict[str, int]], action_names: list[str], action_scale: np.ndarray,
                 action_offset: np.ndarray, layout_params: dict[str, float] | None = None,
                 randomization: "RandomizationConfig | None" = None, nthread: int = 0,
                 seed: int | None = None, render_mode: str | None = None):
        if num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        self.model = model
        self.num_envs = num_envs
        self.frame_skip = frame_skip
        self.max_episode_steps = max_episode_steps
        self.control_dt = model.opt.timestep * frame_skip
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.control_dt))}
        self.batch = mjbatch.Batch(model, num_envs, nthread=nthread, persistent=True)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self.mocap_pos = self.batch.bind("mocap_pos")
        self.mocap_quat = self.batch.bind("mocap_quat")
        self.sensordata = self.batch.bind("sensordata")
        self._nominal: dict[str, np.ndarray] = {}

        params = dict(randomization.params) if randomization is not None else {}
        if params:
            obs_terms = {**obs_terms, "critic": {**obs_terms["critic"], "randomization": len(params)}}
        self.obs_layout = {group: ObsLayout(terms) for group, terms in obs_terms.items()}
        self._obs = {g: np.zeros((num_envs, lay.size), np.float32) for g, lay in self.obs_layout.items()}
        box = lambda n: gymnasium.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.single_observation_space = gymnasium.spaces.Dict({g: box(l.size) for g, l in self.obs_layout.items()})
        #: actions are normalised to [-1, 1]; the robot command is ``action * action_scale + action_offset``
        #: in the units the names give (what an exported policy's contract documents)
        self.action_names = list(action_names)
        self.action_scale = np.asarray(action_scale, np.float64)
        self.action_offset = np.asarray(action_offset, np.float64)
        action_dim = len(self.action_names)
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)

        self.np_random = np.random.default_rng(seed)
        self.episode_step = np.zeros(num_envs, np.int64)
        self.episode_return = np.zeros(num_envs, np.float64)
        self.episode_success = np.zeros(num_envs, bool)
        self.last_action = np.zeros((num_envs, action_dim), np.float32)  # as the policy commanded it
        #: scene-layout parameters a task reads at reset, per env (randomization may set them)
        self.layout_nominal = dict(layout_params or {})
        self.layout_params = {k: np.full(num_envs, v, np.float64) for k, v in self.layout_nominal.items()}
        self._renderer: mujoco.Renderer | None = None
        self._needs_reset = True
        #: called with the ids of finished envs after their last step, before they reset
        #: (e.g. to render the final frame of an episode for a video)
        self.before_reset_hooks: list[Callable[[np.ndarray], None]] = []
        self.randomizer = None
        if params:
            from robolearn.randomization import Randomizer

            self.randomizer = Randomizer(self, randomization, seed=seed)

    # ------------------------------------------------------------------ per-env model fields
    @classmethod
    def resolve_config(cls, config: Any, num_envs: int | None, overrides: dict[str, Any]) -> Any:
        """The task's ``config_cls`` from a config object or dict, with keyword overrides and
        ``num_envs`` (when given) applied on top."""
        cfg = config if isinstance(config, cls.config_cls) else cls.config_cls.model_validate(dict(config or {}))
        if overrides or num_envs is not None:
            cfg = cls.config_cls.model_validate({**cfg.model_dump(), **overrides,
                                                 **({"num_envs": num_envs} if num_envs is not None else {})})
        return cfg

    def model_field(self, name: str) -> np.ndarray:
        """Live per-env values (N, ...) of a model field, via ``Batch.expand``.

        The pristine value is kept (:meth:`nominal_field`) so randomization always applies
        relative to the nominal model, never on top of an earlier sample.
        """
        if name not in self._nominal:
            value = getattr(self.model.opt, name[4:]) if name.startswith("opt.") else getattr(self.model, name)
            self._nominal[name] = np.array(value, copy=True)
        return self.batch.expand(name)

    def nominal_field(self, name: str) -> np.ndarray:
        """The model field's value in the unrandomized model."""
        self.model_field(name)
        return self._nominal[name]

    # ------------------------------------------------------------------ task hooks
    def _reset_envs(self, ids: np.ndarray) -> None:
        raise NotImplementedError

    def _apply_actions(self, actions: np.ndarray) -> None:
        raise NotImplementedError

    def _evaluate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _observe(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _observe_groups(self) -> dict[str, np.ndarray]:
        """Pack the task's terms into the groups; randomization adds noise to ``policy`` only and
        its parameter values to ``critic``."""
        terms = self._observe()
        if self.randomizer is not None:
            terms["randomization"] = self.randomizer.normalized_values()
        obs = {group: layout.pack(self._obs[group], terms) for group, layout in self.obs_layout.items()}
        if self.randomizer is not None:
            self.randomizer.process_obs(obs["policy"])
        return obs

    def _episode_info(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Task-specific episode metrics of the finished envs ``ids`` (called before their reset)."""
        return {}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every env (or ``options["reset_mask"]``); ``seed`` re-seeds the whole batch."""
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
            if self.randomizer is not None:
                self.randomizer.seed(seed)
        mask = None if options is None else options.get("reset_mask")
        ids = np.arange(self.num_envs) if mask is None else np.flatnonzero(mask)
        self._reset_ids(ids)
        self._needs_reset = False
        return self._copy_obs(self._observe_groups()), {}

    def step(self, actions):
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float32)
        expected = (self.num_envs, self.single_action_space.shape[0])
        if actions.shape != expected:
            if actions.size == expected[0] * expected[1]:
                actions = actions.reshape(expected)
            else:
                raise ValueError(f"actions have shape {actions.shape}, expected {expected}")
        actions = np.clip(actions, -1.0, 1.0)
        self.last_action[:] = actions
        if self.randomizer is not None:
            actions = self.randomizer.process_actions(actions)  # latency, noise, dead-band, backlash
            self.randomizer.apply_pushes()
        self._apply_actions(actions)
        self.batch.step(nstep=self.frame_skip, stage=self.step_stage)

        self.episode_step += 1
        reward, terminated = self._evaluate(actions)
        truncated = (self.episode_step >= self.max_episode_steps) & ~terminated
        self.episode_return += reward
        obs = self._observe_groups()
        done = terminated | truncated
        info: dict[str, Any] = {}
        if done.any():
            ids = np.flatnonzero(done)
            info["final_obs"] = self._copy_obs(obs)
            info["_final_obs"] = done
            info["episode"] = self._finished_episode_info(ids)
            info["_episode"] = done
            if self.randomizer is not None:
                self.randomizer.on_episode_end(ids, info["episode"])
            for hook in self.before_reset_hooks:
                hook(ids)
            self._reset_ids(ids)
            obs = self._observe_groups()
        return self._copy_obs(obs), reward.astype(np.float32), terminated, truncated, info

    def _finished_episode_info(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        info = {"return": np.zeros(self.num_envs), "length": np.zeros(self.num_envs, np.int64),
                "success": np.zeros(self.num_envs)}
        info["return"][ids] = self.episode_return[ids]
        info["length"][ids] = self.episode_step[ids]
        info["success"][ids] = self.episode_success[ids]
        for key, values in self._episode_info(ids).items():
            full = np.zeros(self.num_envs, np.float64)
            full[ids] = values
            info[key] = full
        return info

    def _reset_ids(self, ids: np.ndarray) -> None:
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.episode_step[ids] = 0
        self.episode_return[ids] = 0.0
        self.episode_success[ids] = False
        self.last_action[ids] = 0.0
        if self.randomizer is not None:
            self.randomizer.on_reset(ids)
        self._reset_envs(ids)
        self.batch.forward(ids, stage=_STAGE_VEL)

    def _copy_obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {group: value.copy() for group, value in obs.items()}

    def state_dict(self) -> dict[str, Any]:  # TEMPORARY (replaced by the envs branch)
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # TEMPORARY
        pass

    # ------------------------------------------------------------------ rendering
    def render_env(self, index: int = 0, width: int = 480, height: int = 480, camera: str | int = -1) -> np.ndarray:
        """RGB image (H, W, 3) of env ``index``, rendered offscreen (set MUJOCO_GL=egl or osmesa)."""
        if self._renderer is None or (self._renderer.height, self._renderer.width) != (height, width):
            self._render_model = self.batch.get_model(index)
            self._render_model.vis.global_.offwidth = max(width, self._render_model.vis.global_.offwidth)
            self._render_model.vis.global_.offheight = max(height, self._render_model.vis.global_.offheight)
            self._render_data = mujoco.MjData(self._render_model)
            self._renderer = mujoco.Renderer(self._render_model, height=height, width=width)
            self._render_option = mujoco.MjvOption()
            self._render_option.geomgroup[:] = 1  # floor and markers live in groups 3+
        self.batch.get_model(index, self._render_model)
        self.batch.get_data(index, self._render_data)
        mujoco.mj_forward(self._render_model, self._render_data)
        self._renderer.update_scene(self._render_data, camera=camera, scene_option=self._render_option)
        return self._renderer.render()

    def render(self):
        if self.render_mode == "rgb_array":
            return self.render_env(0)
        return None

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def finished_episodes(info: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """TEMPORARY (replaced by the envs branch)."""
    if "episode" not in info:
        return np.zeros(0, np.int64), {}
    ids = np.flatnonzero(info["_episode"])
    return ids, {key: values[ids] for key, values in info["episode"].items()}
