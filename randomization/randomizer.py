"""Domain randomization applied to a batched env: sampled per env at reset, per-step effects in step.

A :class:`Randomizer` binds the ``randomization`` config to one env: it resolves every selection
to model ids (names that match nothing are config errors), samples one value per parameter and
env at each reset (from the ADR ranges, with boundary evaluators pinned), writes physics
parameters into the per-env model fields *relative to the nominal model*, and runs the effects
MuJoCo does not model inside ``step``: action latency, noise, dead-band and backlash, random
pushes, observation noise (per-episode bias and scale, per-step white noise), the failures of
depth cameras (:mod:`robolearn.randomization.depth`) and observation latency (the policy sees the
observation of ``obs_latency`` control steps ago, noise included; at an episode's start, its first).

Its draws come from its own RNG, so with every range at its nominal point the env is bit for bit
the unrandomized one.

The randomizer owns all of its state: :meth:`state_dict` holds the ADR state, its RNG streams and
the per-env samples and per-step memory (a resumed run continues exactly), and :meth:`synchronize`
is the one exchange across the ranks of data-parallel training (rank 0 owns the ADR ranges).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from robolearn.config import ConfigError
from robolearn.randomization.adr import AdrParam, AdrState
from robolearn.randomization.depth import DEPTH_TARGETS, DepthEffects, image_terms

if TYPE_CHECKING:
    from robolearn.config import RandomizationConfig, RandomizationParam
    from robolearn.envs.core import BatchedMujocoEnv

#: targets written into model fields at reset: target -> (field, column)
_MODEL_FIELDS = {
    "geom_friction": ("geom_friction", 0),
    "contact_timeconst": ("geom_solref", 0),
    "joint_damping": ("dof_damping", None),
    "armature": ("dof_armature", None),
}
_SETCONST_TARGETS = {"body_mass", "armature"}
#: selection keys (``select.<key>``) of the model element kinds
_SELECT_KEYS = {"geom": "geoms", "body": "bodies", "joint": "joints", "actuator": "actuators"}
#: the per-env arrays :meth:`Randomizer.state_dict` holds, by key -> attribute
_PER_ENV_STATE = {"values": "values", "tags": "tags", "action_history": "_action_history",
                  "backlash": "_backlash_out", "obs_history": "_obs_history", "obs_fresh": "_obs_fresh"}


class Communicator(Protocol):
    """What :meth:`Randomizer.synchronize` needs of a data-parallel job (duck-typed)."""

    enabled: bool  # more than one rank
    is_main: bool  # rank 0

    def all_gather_object(self, obj: Any) -> list: ...  # every rank's obj, in rank order

    def broadcast_object(self, obj: Any) -> Any: ...  # rank 0's obj on every rank


class RandomizationError(ConfigError):
    """A randomization parameter that does not fit the env (message names the config key)."""


def _apply_op(op: str, nominal: np.ndarray, value: np.ndarray) -> np.ndarray:
    if op == "scale":
        return nominal * value
    if op == "add":
        return nominal + value
    return np.broadcast_to(value, np.broadcast_shapes(np.shape(nominal), np.shape(value))).copy()


class Randomizer:
    """Per-env randomization of one :class:`BatchedMujocoEnv` (see the module docstring)."""

    def __init__(self, env: "BatchedMujocoEnv", config: "RandomizationConfig", seed: int | None = None):
        self.env, self.config = env, config
        self.names = list(config.params)
        self.params: list[RandomizationParam] = [config.params[n] for n in self.names]
        adr = config.adr
        self.adr = AdrState(
            [AdrParam(n, p.init_range.as_tuple(), p.limit_range.as_tuple(), p.delta, p.delta_style, p.type == "int")
             for n, p in zip(self.names, self.params)],
            boundary_prob=adr.boundary_prob if adr.enabled else 0.0, queue_length=adr.queue_length,
            t_low=adr.t_low, t_high=adr.t_high, update=adr.enabled and adr.update)
        self.seed(seed)
        #: staged parameters (``stage``) already sampled from their later range
        self.stage_reached = np.zeros(len(self.params), bool)
        n, a = env.num_envs, env.single_action_space.shape[0]
        self.values = np.tile([self._nominal_value(p) for p in self.params], (n, 1)).astype(np.float64)
        self.tags = np.full((n, 3), -1.0)
        self._ids = [self._resolve(name, p) for name, p in zip(self.names, self.params)]
        self._by_target: dict[str, list[int]] = {}
        for i, p in enumerate(self.params):
            self._by_target.setdefault(p.target, []).append(i)

        # per-step state
        self.max_latency = int(max([p.limit_range.hi for p in self.params if p.target == "action_latency"] or [0]))
        self._action_history = np.zeros((n, self.max_latency + 1, a), np.float32)
        self._backlash_out = np.zeros((n, a), np.float32)
        obs_latency = int(max([p.limit_range.hi for p in self.params if p.target == "obs_latency"] or [-1]))
        #: the policy observations of the last ``obs_latency + 1`` steps, newest first (none without the target)
        self._obs_history = np.zeros((n, obs_latency + 1, env.obs_layout["policy"].size), np.float32)
        self._obs_fresh = np.ones(n, bool)  # envs whose observation history starts over
        self._obs_bias: dict[str, np.ndarray] = {}  # term -> (n, width) per-episode bias
        self._obs_scale: dict[str, np.ndarray] = {}
        depth = [(i, p.target, term) for i, p in enumerate(self.params) if p.target in DEPTH_TARGETS
                 for term in self._ids[i]]
        depth_latency = int(max([p.limit_range.hi for p in self.params if p.target == "depth_latency"] or [0]))
        #: depth-camera effects (robolearn.randomization.depth), when a depth target is configured
        self._depth = DepthEffects(env, depth, depth_latency) if depth else None
        # data-parallel training (after the first synchronize): finished boundary results wait here
        # for the next synchronize instead of being recorded at once
        self._defer_results = False
        self._pending_tags = np.zeros((0, 3))
        self._pending_performance = np.zeros(0)

    def seed(self, seed: int | None) -> None:
        """Seed the value and noise draws and ADR's boundary choices (apart from the env's RNG)."""
        self.rng = np.random.default_rng(None if seed is None else [seed, 104729])
        self.adr.rng = np.random.default_rng(None if seed is None else [seed, 7919])

    # ------------------------------------------------------------------ binding
    @staticmethod
    def _nominal_value(p: "RandomizationParam") -> float:
        """The value at which the parameter changes nothing (scale 1, add 0, set: the range start)."""
        if p.op == "scale":
            return 1.0
        if p.op == "add":
            return 0.0
        return p.init_range.lo

    def _resolve(self, name: str, p: "RandomizationParam") -> Any:
        """Model ids (or obs slices / layout key) a parameter acts on; errors name the config key."""
        env, key = self.env, f"randomization.params.{name}"
        model = env.model

        def ids_of(kind: str, names: list[str]) -> np.ndarray:
            where = f"{key}.select.{_SELECT_KEYS[kind]}"  # never empty: the config schema refuses that
            out = []
            for item in names:
                try:
                    out.append(getattr(model, kind)(item).id)
                except KeyError:
                    raise RandomizationError(f"{where}: {item!r} matches no {kind} in the model") from None
            return np.array(out, np.int64)

        t = p.target
        if t == "geom_friction":
            return ids_of("geom", p.select.geoms)
        if t == "contact_timeconst":
            geoms = ids_of("geom", p.select.geoms)
            # MuJoCo clamps a time constant under two timesteps to that (solref's "refsafe"): refuse
            # a range that would be clamped rather than randomize nothing below it
            stiffest = float(np.min(_apply_op(p.op, model.geom_solref[geoms, 0], p.limit_range.lo)))
            if stiffest < 2 * model.opt.timestep:
                raise RandomizationError(f"{key}.limits: a contact time constant of {stiffest:g} s is under two "
                                         f"physics timesteps ({2 * model.opt.timestep:g} s), where MuJoCo clamps it")
            return geoms
        if t == "body_mass":
            return ids_of("body", p.select.bodies)
        if t == "push":
            bodies = ids_of("body", p.select.bodies)
            free = [model.body_jntnum[b] > 0 and model.jnt_type[model.body_jntadr[b]] == 0 for b in bodies]
            if not all(free):
                raise RandomizationError(f"{key}.select.bodies: push needs bodies with a free joint")
            return bodies
        if t in ("joint_damping", "armature"):
            joints = ids_of("joint", p.select.joints)
            dofs = [np.arange(model.jnt_dofadr[j], model.jnt_dofadr[j] + _dof_count(model.jnt_type[j])) for j in joints]
            return np.concatenate(dofs)
        if t in ("actuator_gain", "actuator_strength"):
            return ids_of("actuator", p.select.actuators)
        if t in DEPTH_TARGETS:
            images = image_terms(env)
            for term in p.select.obs_terms:
                if term not in images:
                    raise RandomizationError(f"{key}.select.obs_terms: {term!r} is not a depth-image term of "
                                             f"{type(env).__name__} (depth images: {', '.join(images) or 'none'})")
            return list(p.select.obs_terms)
        if t in ("obs_noise", "obs_bias", "obs_scale"):
            layout = env.obs_layout["policy"]
            for term in p.select.obs_terms:
                if term not in layout.slices:
                    raise RandomizationError(f"{key}.select.obs_terms: {term!r} is not a policy obs term "
                                             f"(terms: {', '.join(layout.slices)})")
            return list(p.select.obs_terms)
        if t == "layout":
            if p.select.layout not in env.layout_params:
                known = ", ".join(env.layout_params) or "none"
                raise RandomizationError(f"{key}.select.layout: {p.select.layout!r} is not a layout parameter "
                                         f"of {type(env).__name__} (known: {known})")
            return p.select.layout
        return None

    # ------------------------------------------------------------------ reset
    def on_reset(self, ids: np.ndarray) -> None:
        """Sample the resetting envs' values and apply the reset-time effects (before the task's
        own reset, which may read layout parameters)."""
        if not self.params:
            return
        values, tags = self.adr.sample(ids.size, self.rng)
        self.values[ids] = values
        self.tags[ids] = tags
        env, setconst = self.env, False
        for i, (p, sel) in enumerate(zip(self.params, self._ids)):
            v = values[:, i]
            t = p.target
            if t in _MODEL_FIELDS:
                field, col = _MODEL_FIELDS[t]
                data, nominal = env.model_field(field), env.nominal_field(field)
                if col is None:
                    data[ids[:, None], sel] = _apply_op(p.op, nominal[sel], v[:, None])
                else:
                    data[ids[:, None], sel, col] = _apply_op(p.op, nominal[sel, col], v[:, None])
                setconst |= t in _SETCONST_TARGETS
            elif t == "body_mass":
                mass, inertia = env.model_field("body_mass"), env.model_field("body_inertia")
                m0, i0 = env.nominal_field("body_mass")[sel], env.nominal_field("body_inertia")[sel]
                new_mass = _apply_op(p.op, m0, v[:, None])
                mass[ids[:, None], sel] = new_mass
                inertia[ids[:, None], sel] = i0 * (new_mass / np.where(m0 > 0, m0, 1.0))[..., None]
                setconst = True
            elif t in ("actuator_gain", "actuator_strength"):
                self._apply_actuator(t, p.op, sel, ids, v)
            elif t == "gravity":
                gravity = env.model_field("opt.gravity")
                gravity[ids, 2] = _apply_op(p.op, env.nominal_field("opt.gravity")[2], v)
            elif t == "layout":
                env.layout_params[sel][ids] = _apply_op(p.op, env.layout_nominal[sel], v)
        if setconst:
            env.batch.set_const(ids)
        if "action_latency" in self._by_target or "action_backlash" in self._by_target:
            self._action_history[ids] = 0.0
            self._backlash_out[ids] = 0.0
        self._obs_fresh[ids] = True
        for i in self._by_target.get("obs_bias", []):
            for term in self._ids[i]:
                width = self.env.obs_layout["policy"].widths[term]
                bias = self._obs_bias.setdefault(term, np.zeros((self.env.num_envs, width), np.float32))
                bias[ids] = self.rng.standard_normal((ids.size, width)) * values[:, i, None]
        for i in self._by_target.get("obs_scale", []):
            for term in self._ids[i]:
                width = self.env.obs_layout["policy"].widths[term]
                scale = self._obs_scale.setdefault(term, np.ones((self.env.num_envs, width), np.float32))
                scale[ids] = values[:, i, None]
        if self._depth is not None:
            self._depth.on_reset(ids, values)

    def _apply_actuator(self, target: str, op: str, sel: np.ndarray, ids: np.ndarray, v: np.ndarray) -> None:
        """Gain: kp in gainprm[0] with the bias term that mirrors it (biasprm[1] of a position servo,
        biasprm[2] of a velocity servo). Strength: the whole force law and its force range."""
        env = self.env
        gain, bias = env.model_field("actuator_gainprm"), env.model_field("actuator_biasprm")
        g0, b0 = env.nominal_field("actuator_gainprm")[sel], env.nominal_field("actuator_biasprm")[sel]
        new_gain = _apply_op(op, g0[:, 0], v[:, None])
        factor = new_gain / np.where(g0[:, 0] != 0, g0[:, 0], 1.0)
        gain[ids[:, None], sel, 0] = new_gain
        if target == "actuator_gain":
            mirrors = np.isclose(b0[:, 1:3], -g0[:, :1]) & (g0[:, :1] != 0)  # (k, 2)
            new_bias = np.where(mirrors, b0[:, 1:3] * factor[..., None], b0[:, 1:3])
            bias[ids[:, None], sel, 1:3] = new_bias
        else:
            bias[ids[:, None], sel, :3] = b0[:, :3] * factor[..., None]
            force = env.model_field("actuator_forcerange")
            force[ids[:, None], sel] = env.nominal_field("actuator_forcerange")[sel] * factor[..., None]

    # ------------------------------------------------------------------ per step
    def process_actions(self, actions: np.ndarray) -> np.ndarray:
        """The action the actuators receive: noise, dead-band, backlash, then latency."""
        out = actions
        for i in self._by_target.get("action_noise", []):
            out = out + self.rng.standard_normal(out.shape).astype(np.float32) * self.values[:, i, None].astype(np.float32)
        for i in self._by_target.get("action_deadband", []):
            out = np.where(np.abs(out) < self.values[:, i, None], 0.0, out).astype(np.float32)
        for i in self._by_target.get("action_backlash", []):
            gap = self.values[:, i, None].astype(np.float32)
            self._backlash_out = np.clip(self._backlash_out, out - gap, out + gap)
            out = self._backlash_out
        for i in self._by_target.get("action_latency", []):
            history = self._action_history
            history[:, 1:] = history[:, :-1]
            history[:, 0] = out
            out = history[np.arange(len(out)), self.values[:, i].astype(np.int64)]
        return np.clip(out, -1.0, 1.0)

    def apply_pushes(self) -> None:
        """Random horizontal velocity kicks: each env is pushed with probability dt / every_s."""
        env = self.env
        for i in self._by_target.get("push", []):
            p = self.params[i]
            hit = self.rng.random(env.num_envs) < env.control_dt / p.every_s
            if not hit.any():
                continue
            angle = self.rng.uniform(-np.pi, np.pi, hit.sum())
            speed = self.values[hit, i]
            for body in self._ids[i]:
                dof = env.model.jnt_dofadr[env.model.body_jntadr[body]]
                env.qvel[hit, dof] += speed * np.cos(angle)
                env.qvel[hit, dof + 1] += speed * np.sin(angle)

    def process_obs(self, policy: np.ndarray, advance: bool = True) -> None:
        """Observation noise on the policy group, in place: the depth camera's failures, then
        x * scale + bias + white noise, then observation latency. ``advance``: this observation
        is a new control step's (a step's first observation); False when the same step is observed
        again (after some envs reset, or at ``reset``): latency histories then do not move on."""
        if self._depth is not None:
            self._depth.process(policy, self.values, self.rng, advance)
        layout = self.env.obs_layout["policy"]
        for term, scale in self._obs_scale.items():
            policy[:, layout.slices[term]] *= scale
        for term, bias in self._obs_bias.items():
            policy[:, layout.slices[term]] += bias
        for i in self._by_target.get("obs_noise", []):
            for term in self._ids[i]:
                sl = layout.slices[term]
                noise = self.rng.standard_normal((policy.shape[0], sl.stop - sl.start)).astype(np.float32)
                policy[:, sl] += noise * self.values[:, i, None].astype(np.float32)
        for i in self._by_target.get("obs_latency", []):
            history = self._obs_history
            if advance:
                history[:, 1:] = history[:, :-1]
            history[:, 0] = policy
            history[self._obs_fresh] = policy[self._obs_fresh, None]
            self._obs_fresh[:] = False
            policy[:] = history[np.arange(len(policy)), self.values[:, i].astype(np.int64)]

    # ------------------------------------------------------------------ episode ends
    def on_episode_end(self, ids: np.ndarray, episode: dict[str, np.ndarray]) -> None:
        """Boundary evaluators report their episode's objective to ADR (at once, or at the next
        :meth:`synchronize` in data-parallel training)."""
        if not self.params or not self.adr.update:
            return
        objective = self.config.adr.objective
        if objective not in episode:
            raise RandomizationError(f"randomization.adr.objective: {objective!r} is not an episode metric "
                                     f"(metrics: {', '.join(episode)})")
        tags = self.tags[ids]
        boundary = tags[:, 0] >= 0
        if not boundary.any():
            return
        performance = np.asarray(episode[objective][ids][boundary], np.float64)
        if self._defer_results:
            self._pending_tags = np.concatenate([self._pending_tags, tags[boundary]])
            self._pending_performance = np.concatenate([self._pending_performance, performance])
        else:
            self.adr.record(tags[boundary], performance)

    def synchronize(self, comm: Communicator) -> None:
        """The one per-iteration exchange across the ranks of data-parallel training.

        With ``comm.enabled`` (more than one rank): from the first call on, finished boundary
        results wait on every rank instead of being recorded; each call gathers every rank's
        waiting results to rank 0, which records them in rank order, then gives every rank rank 0's
        ADR ranges and move count (the others keep empty queues). Call it once before the first
        rollout and once per iteration, on every rank. A single process (``comm.enabled`` false)
        records results at episode end and this does nothing.
        """
        if not comm.enabled:
            return
        self._defer_results = True
        mine = (self._pending_tags, self._pending_performance)
        self._pending_tags, self._pending_performance = np.zeros((0, 3)), np.zeros(0)
        parts = comm.all_gather_object(mine)
        if comm.is_main:
            for tags, performance in parts:
                self.adr.record(np.asarray(tags, np.float64).reshape(-1, 3), np.asarray(performance, np.float64))
        else:
            self.adr.queues = [[[], []] for _ in self.adr.params]
        ranges, moves = comm.broadcast_object((self.adr.ranges.tolist(), self.adr.moves) if comm.is_main else None)
        if not comm.is_main:
            self.adr.ranges = np.array(ranges, np.float64).reshape(-1, 2)
            self.adr.moves = int(moves)

    def advance_stages(self, success_rate: float) -> list[str]:
        """Give every staged parameter whose ``stage.success`` the training success rate has reached
        its ``stage.range`` (once: the later range stays, whatever success does afterwards); returns
        the names switched by this call. Results waiting for a bound of the old range are dropped.
        The trainer calls it on every rank with the same merged window, so ranks agree."""
        switched = []
        for i, p in enumerate(self.params):
            if p.stage is None or self.stage_reached[i] or success_rate < p.stage.success:
                continue
            self.adr.ranges[i] = p.stage.range.as_tuple()
            self.adr.queues[i] = [[], []]
            self.stage_reached[i] = True
            switched.append(self.names[i])
        return switched

    def normalized_values(self) -> np.ndarray:
        """Per-env values mapped to [-1, 1] over each parameter's limits (the critic's view)."""
        limits = np.array([p.limit_range.as_tuple() for p in self.params], np.float64).reshape(-1, 2)
        span = np.where(limits[:, 1] > limits[:, 0], limits[:, 1] - limits[:, 0], 1.0)
        return (2.0 * (self.values - limits[:, 0]) / span - 1.0).astype(np.float32)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """All of the randomizer's state, as plain data: the ADR state (ranges, queues, its RNG,
        moves), the value/noise RNG, which stages were reached, and per env the sampled values,
        boundary tags, action history, backlash output, per-episode observation bias and scale, and
        boundary results waiting for :meth:`synchronize`."""
        state: dict[str, Any] = {"names": list(self.names), "adr": self.adr.state_dict(),
                                 "rng": self.rng.bit_generator.state, "stage_reached": self.stage_reached.tolist()}
        for key, attr in _PER_ENV_STATE.items():
            state[key] = getattr(self, attr).copy()
        state["obs_bias"] = {term: v.copy() for term, v in self._obs_bias.items()}
        state["obs_scale"] = {term: v.copy() for term, v in self._obs_scale.items()}
        state["pending_tags"] = self._pending_tags.copy()
        state["pending_performance"] = self._pending_performance.copy()
        if self._depth is not None:
            state["depth"] = self._depth.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` of a randomizer with the same parameters and number of envs
        (ValueError naming what differs, before anything changes)."""
        optional = ("obs_history", "obs_fresh")  # added with obs_latency: older states lack them
        expected = ("names", "adr", "rng", *(k for k in _PER_ENV_STATE if k not in optional), "obs_bias", "obs_scale",
                    "pending_tags", "pending_performance")
        missing = [key for key in expected if key not in state]
        if missing:
            raise ValueError(f"randomizer state lacks {missing}")
        if list(state["names"]) != self.names:
            raise ValueError(f"randomizer state has parameters {list(state['names'])}, this config has {self.names}")
        present = {key: attr for key, attr in _PER_ENV_STATE.items() if key in state}
        for key, attr in present.items():
            shape, mine = np.shape(state[key]), getattr(self, attr).shape
            if shape != mine:
                raise ValueError(f"randomizer state {key!r} has shape {shape}, this env's is {mine}")
        self.adr.load_state_dict(state["adr"])
        self.rng.bit_generator.state = state["rng"]
        self.stage_reached[:] = state.get("stage_reached", False)  # older states: no stage reached
        for key, attr in present.items():
            getattr(self, attr)[...] = np.asarray(state[key])
        self._obs_bias = {term: np.array(v, np.float32) for term, v in state["obs_bias"].items()}
        self._obs_scale = {term: np.array(v, np.float32) for term, v in state["obs_scale"].items()}
        self._pending_tags = np.array(state["pending_tags"], np.float64).reshape(-1, 3)
        self._pending_performance = np.array(state["pending_performance"], np.float64).reshape(-1)
        if self._depth is not None:
            self._depth.load_state_dict(state["depth"])


def _dof_count(joint_type: int) -> int:
    return {0: 6, 1: 3, 2: 1, 3: 1}[int(joint_type)]  # free, ball, slide, hinge
