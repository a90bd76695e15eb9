"""Batched MuJoCo env core: one object simulates N robots on ``mujoco.batch.Batch``.

A task subclasses :class:`BatchedMujocoEnv`, sets ``config_cls`` and fills in the hooks, each
working on all envs at once with numpy (no Python loop over envs):

* ``_build_model()``     the compiled ``MjModel`` (from ``self.cfg``);
* ``_obs_terms()``       observation groups: term name -> width (or shape, e.g. ``(H, W)`` for an image);
* ``_action_spec()``     action names, scale and offset (robot command = action * scale + offset);
* ``_layout_nominal()``  scene-layout parameters randomization may set per env (default: none);
* ``_fixed_commands()``  robot commands the task holds constant instead of acting on them;
* ``_reset_envs(ids)``   write the initial state of the envs ``ids`` (after a physics reset);
* ``_apply_actions(a)``  turn normalised actions in [-1, 1] into ``ctrl``;
* ``_step_physics()``    the control step's physics (default: ``frame_skip`` substeps);
* ``_reward_and_termination(a)``  after the physics step: ``(terms, terminated)``, the unweighted
                         reward terms (name -> (N,)) and per-step bookkeeping;
* ``_observe()``         every observation term, name -> (N, width); the core packs them into the
                         groups ``{"policy": (N, Dp), "critic": (N, Dc)}``;
* ``_task_metrics(ids)`` the task's own episode metrics (``task_metrics``) of finished envs.

The task's config (``config_cls``) has ``num_envs``, ``nthread``, ``control_hz``,
``episode_seconds`` and ``rewards``, whose fields name the reward terms and hold their weights
(:mod:`robolearn.envs.rewards`); the core weights and sums the terms.

Domain randomization (``robolearn.randomization``) plugs in here: sampled per env at reset through
per-env model fields and the task's ``layout_params``, per-step effects on actions and the policy
observations inside ``step``; the critic group gains a ``randomization`` term with every env's
parameter values.

An env also takes ``physics`` (:class:`~robolearn.config.PhysicsConfig`, :mod:`robolearn.envs.physics`):
another integrator, a finer timestep at the same control period, solver and contact settings,
control-period jitter, applied to the compiled model before the batch copies it; ``robolearn
sim2sim`` runs exported policies under such variants. Training never sets it.

The core owns the step loop, the time limit, per-episode metrics and SAME_STEP autoreset: the
observation returned for a finished env is already the first one of its next episode, and
``info["final_obs"]`` holds, for *every* env, the true next observation of this step (the
pre-reset one for finished envs), so a trainer bootstraps truncated episodes with
``V(info["final_obs"])`` in one batched call. ``info["_final_obs"]`` marks the envs that reset;
``info["episode"]`` / ``info["_episode"]`` hold the finished episodes' metrics
(:func:`finished_episodes` extracts them).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode
from mujoco import batch as mjbatch

from robolearn.config import EnvConfig, PhysicsConfig, RandomizationConfig
from robolearn.envs import state as env_state
from robolearn.envs.physics import apply_physics, control_substeps, substeps_per_control_step
from robolearn.envs.rewards import RewardWeights

_STAGE_VEL = mujoco.mjtStage.mjSTAGE_VEL
#: metrics every task reports per episode, before its own and the reward terms' sums
COMMON_METRICS = ("return", "length", "success")


class ObsLayout:
    """Named slices of one flat observation group: ``terms`` maps name -> width, or -> shape for a
    term with more than one axis (an image: ``(H, W)``, stored row-major in its slice), in order."""

    def __init__(self, terms: dict[str, int | tuple[int, ...]]):
        #: name -> shape: ``(width,)`` for a vector term, ``(H, W)`` for an image
        self.shapes = {name: (int(t),) if isinstance(t, (int, np.integer)) else tuple(int(d) for d in t)
                       for name, t in terms.items()}
        self.widths = {name: int(np.prod(shape)) for name, shape in self.shapes.items()}
        self.slices: dict[str, slice] = {}
        start = 0
        for name, width in self.widths.items():
            self.slices[name] = slice(start, start + width)
            start += width
        self.size = start

    @property
    def images(self) -> dict[str, tuple[int, ...]]:
        """The terms with more than one axis (images), name -> shape."""
        return {name: shape for name, shape in self.shapes.items() if len(shape) > 1}

    def pack(self, out: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """Write each term's (N, width) (or (N,)) values into its slice of ``out``."""
        for name, sl in self.slices.items():
            value = values[name]
            out[:, sl] = value.reshape(out.shape[0], -1)
        return out


def finished_episodes(info: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The envs whose episode ended at this step and each episode metric's values for them.

    Returns ``(ids, metrics)``: ``ids`` in env order, ``metrics[name]`` the values of those envs in
    the same order (empty ids and an empty dict when no episode ended).
    """
    if "episode" not in info:
        return np.zeros(0, np.int64), {}
    ids = np.flatnonzero(info["_episode"])
    return ids, {name: values[ids] for name, values in info["episode"].items()}


class BatchedMujocoEnv(gymnasium.vector.VectorEnv):
    """Base of every robolearn task: N simulations stepped together, SAME_STEP autoreset."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}
    #: the task's config class (the ``env`` section of an experiment)
    config_cls: type[EnvConfig] = EnvConfig
    #: forward stages computed after each physics step: VEL makes site/body poses and velocity
    #: sensors current; a task that reads only qpos, qvel and in-step sensors can skip it (NONE)
    step_stage: int = _STAGE_VEL
    #: the task's own per-episode metrics (``info["episode"]`` also has COMMON_METRICS and the
    #: reward terms' sums; ``episode_metrics`` lists them all)
    task_metrics: tuple[str, ...] = ()
    #: the camera ``robolearn eval --video`` renders by default (the free camera if the model has none of that name)
    video_camera: str = "top"

    def __init__(self, num_envs: int | None = None, config: Any = None, seed: int | None = None,
                 render_mode: str | None = None, randomization: RandomizationConfig | dict | None = None,
                 physics: PhysicsConfig | dict | None = None, **overrides: Any):
        self.cfg = cfg = self.resolve_config(config, num_envs, overrides)
        self.task = cfg.task
        self.model = model = self._build_model()
        #: changes to the simulation that keep the task (sim-to-sim checks); none by default
        self.physics = physics if isinstance(physics, PhysicsConfig) else PhysicsConfig.model_validate(physics or {})
        self.frame_skip = substeps_per_control_step(cfg.control_hz, model.opt.timestep, self.physics)
        apply_physics(model, self.physics)
        self._jitter_rng = np.random.default_rng(seed)  # apart from the layouts' draws
        self.num_envs = cfg.num_envs
        self.max_episode_steps = int(round(cfg.episode_seconds * cfg.control_hz))
        self.control_dt = model.opt.timestep * self.frame_skip
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.control_dt))}
        self.batch = mjbatch.Batch(model, self.num_envs, nthread=cfg.nthread, persistent=True)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self.mocap_pos = self.batch.bind("mocap_pos")
        self.mocap_quat = self.batch.bind("mocap_quat")
        self.sensordata = self.batch.bind("sensordata")
        self._nominal: dict[str, np.ndarray] = {}
        randomization = RandomizationConfig.model_validate(randomization or {})
        self._init_spaces(dict(randomization.params))
        self._init_episodes(seed)
        self._renderer: mujoco.Renderer | None = None
        self._needs_reset = True
        #: called with the ids of finished envs after their last step, before they reset
        #: (e.g. to render the final frame of an episode for a video)
        self.before_reset_hooks: list[Callable[[np.ndarray], None]] = []
        self.randomizer = None
        if randomization.params:
            from robolearn.randomization import Randomizer

            self.randomizer = Randomizer(self, randomization, seed=seed)

    def _init_spaces(self, randomized: dict[str, Any]) -> None:
        """Observation groups and spaces, the action contract and space."""
        obs_terms = self._obs_terms()
        if randomized:
            obs_terms = {**obs_terms, "critic": {**obs_terms["critic"], "randomization": len(randomized)}}
        n = self.num_envs
        self.obs_layout = {group: ObsLayout(terms) for group, terms in obs_terms.items()}
        self._obs = {g: np.zeros((n, lay.size), np.float32) for g, lay in self.obs_layout.items()}
        box = lambda size: gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float32)  # noqa: E731
        self.single_observation_space = gymnasium.spaces.Dict({g: box(l.size) for g, l in self.obs_layout.items()})
        names, scale, offset = self._action_spec()
        #: actions are normalised to [-1, 1]; the robot command is ``action * action_scale + action_offset``
        #: in the units the names give (what an exported policy's contract documents)
        self.action_names = list(names)
        self.action_scale = np.asarray(scale, np.float64)
        self.action_offset = np.asarray(offset, np.float64)
        #: robot commands the task holds constant (name -> value in the name's units), not actions
        self.fixed_commands: dict[str, float] = {k: float(v) for k, v in self._fixed_commands().items()}
        self._check_action_contract()
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (len(self.action_names),), np.float32)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, n)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, n)

    def _check_action_contract(self) -> None:
        dim = len(self.action_names)
        if self.action_scale.shape != (dim,) or self.action_offset.shape != (dim,):
            raise ValueError(f"{self.task}: action scale {self.action_scale.shape} and offset "
                             f"{self.action_offset.shape} must match the {dim} action names")
        zero = [name for name, s in zip(self.action_names, self.action_scale) if s == 0]
        if zero:
            raise ValueError(f"{self.task}: action {zero[0]!r} has scale 0; hold it in fixed_commands instead")
        both = sorted(set(self.fixed_commands) & set(self.action_names))
        if both:
            raise ValueError(f"{self.task}: {both[0]!r} is both an action and a fixed command")

    def _init_episodes(self, seed: int | None) -> None:
        """Reward weights, episode counters and the layout parameters."""
        n, a = self.num_envs, len(self.action_names)
        self.reward_weights = RewardWeights(self.cfg.rewards, self.task)
        #: every metric ``info["episode"]`` reports, in order (what a trainer logs)
        self.episode_metrics: tuple[str, ...] = (
            COMMON_METRICS + tuple(self.task_metrics) + tuple(f"reward/{t}" for t in self.reward_weights.names))
        self.np_random = np.random.default_rng(seed)
        self.episode_step = np.zeros(n, np.int64)
        self.episode_return = np.zeros(n, np.float64)
        self.episode_reward_terms = np.zeros((n, len(self.reward_weights.names)))  # weighted sums
        self.episode_success = np.zeros(n, bool)
        self.last_action = np.zeros((n, a), np.float32)  # as the policy commanded it
        #: scene-layout parameters a task reads at reset, per env (randomization may set them)
        self.layout_nominal = dict(self._layout_nominal())
        self.layout_params = {k: np.full(n, v, np.float64) for k, v in self.layout_nominal.items()}

    @classmethod
    def resolve_config(cls, config: Any, num_envs: int | None, overrides: dict[str, Any]) -> Any:
        """The task's ``config_cls`` from a config object or dict, with keyword overrides and
        ``num_envs`` (when given) applied on top."""
        cfg = config if isinstance(config, cls.config_cls) else cls.config_cls.model_validate(dict(config or {}))
        if overrides or num_envs is not None:
            cfg = cls.config_cls.model_validate({**cfg.model_dump(), **overrides,
                                                 **({"num_envs": num_envs} if num_envs is not None else {})})
        return cfg

    # ------------------------------------------------------------------ per-env model fields
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
    def _build_model(self) -> mujoco.MjModel:
        raise NotImplementedError

    def _obs_terms(self) -> dict[str, dict[str, int]]:
        raise NotImplementedError

    def _action_spec(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _layout_nominal(self) -> dict[str, float]:
        return {}

    def _fixed_commands(self) -> dict[str, float]:
        return {}

    def _reset_envs(self, ids: np.ndarray) -> None:
        raise NotImplementedError

    def _apply_actions(self, actions: np.ndarray) -> None:
        raise NotImplementedError

    def _reward_and_termination(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        raise NotImplementedError

    def _step_physics(self) -> None:
        """One control step of physics: :meth:`control_substeps` substeps, then the ``step_stage``
        forward stages (a task with costly sensors may compute them on the last substep only)."""
        self.batch.step(nstep=self.control_substeps(), stage=self.step_stage)

    def control_substeps(self) -> int:
        """Physics steps in this control step: ``frame_skip``, or drawn around it when the
        ``physics`` variant jitters the control period."""
        return control_substeps(self.frame_skip, self.physics.control_jitter, self._jitter_rng)

    def _observe(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _task_metrics(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The task's ``task_metrics`` of the finished envs ``ids`` (called before their reset)."""
        return {}

    def _observe_groups(self, advance: bool = False) -> dict[str, np.ndarray]:
        """Pack the task's terms into the groups; randomization adds noise to ``policy`` only and
        its parameter values to ``critic``. ``advance``: the first observation of a new control
        step (False at reset and when a step's observation is taken again after some envs reset,
        so that latency histories move once per step)."""
        terms = self._observe()
        if self.randomizer is not None:
            terms["randomization"] = self.randomizer.normalized_values()
        obs = {group: layout.pack(self._obs[group], terms) for group, layout in self.obs_layout.items()}
        if self.randomizer is not None:
            self.randomizer.process_obs(obs["policy"], advance)
        return obs

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
            raise RuntimeError("call reset() (or load_state_dict()) before step()")
        actions = self._checked_actions(actions)
        self.last_action[:] = actions
        if self.randomizer is not None:
            actions = self.randomizer.process_actions(actions)  # latency, noise, dead-band, backlash
            self.randomizer.apply_pushes()
        self._apply_actions(actions)
        self._step_physics()

        self.episode_step += 1
        terms, terminated = self._reward_and_termination(actions)
        reward = self._weighted_reward(terms)
        truncated = (self.episode_step >= self.max_episode_steps) & ~terminated
        self.episode_return += reward
        obs = self._observe_groups(advance=True)
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

    def _checked_actions(self, actions) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float32)
        expected = (self.num_envs, self.single_action_space.shape[0])
        if actions.shape != expected:
            if actions.size != expected[0] * expected[1]:
                raise ValueError(f"actions have shape {actions.shape}, expected {expected}")
            actions = actions.reshape(expected)
        return np.clip(actions, -1.0, 1.0)

    def _weighted_reward(self, terms: dict[str, np.ndarray]) -> np.ndarray:
        """The reward (float64): the terms times their weights, summed in weight order; adds each
        weighted term to its episode sum."""
        self.reward_weights.check(terms, self.num_envs)
        weighted = self.reward_weights.weigh(terms)
        for j, value in enumerate(weighted):
            self.episode_reward_terms[:, j] += value
        return self.reward_weights.total(weighted, self.num_envs)

    def _finished_episode_info(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        info = {"return": np.zeros(self.num_envs), "length": np.zeros(self.num_envs, np.int64),
                "success": np.zeros(self.num_envs)}
        info["return"][ids] = self.episode_return[ids]
        info["length"][ids] = self.episode_step[ids]
        info["success"][ids] = self.episode_success[ids]
        metrics = self._task_metrics(ids)
        for j, term in enumerate(self.reward_weights.names):
            metrics[f"reward/{term}"] = self.episode_reward_terms[ids, j]
        for key, values in metrics.items():
            full = np.zeros(self.num_envs, np.float64)
            full[ids] = values
            info[key] = full
        return info

    def _reset_ids(self, ids: np.ndarray) -> None:
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.episode_step[ids] = 0
        self.episode_return[ids] = 0.0
        self.episode_reward_terms[ids] = 0.0
        self.episode_success[ids] = False
        self.last_action[ids] = 0.0
        if self.randomizer is not None:
            self.randomizer.on_reset(ids)
        self._reset_envs(ids)
        self.batch.forward(ids, stage=_STAGE_VEL)

    def latest_obs(self, group: str = "policy") -> np.ndarray:
        """The observation group computed last (N, D), read-only: inside ``before_reset_hooks`` the
        finished envs' final observation, otherwise what the last ``reset`` / ``step`` returned."""
        view = self._obs[group].view()
        view.flags.writeable = False
        return view

    def _copy_obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {group: value.copy() for group, value in obs.items()}

    # ------------------------------------------------------------------ episodes in progress
    def state_dict(self) -> dict[str, Any]:
        """Everything a fresh env of the same config needs to continue these episodes exactly:
        physics, per-env model fields, task state, RNG streams and the randomizer. Plain data only
        (numpy arrays, Python scalars, lists and dicts); see :mod:`robolearn.envs.state`."""
        return env_state.capture(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of an env of the same task and ``num_envs`` (no reset
        needed). ValueError naming what differs otherwise."""
        env_state.restore(self, state)
        self._needs_reset = False

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

