"""``PolicyRunner``: runs an exported ``policy.onnx`` on the robot, one observation per call.

Imports only numpy and onnxruntime (no torch)::

    from robolearn.deploy import PolicyRunner
    runner = PolicyRunner("runs/nav/<stamp>/export")      # or .../policy.onnx
    runner.reset()                                        # at episode start: zero recurrent state / context
    command = runner.step(obs)                            # float32 (obs_dim,) -> float32 (action_dim,)
    command = runner.step_terms({"depth": image, "goal": goal, ...})   # or term by term (images (H, W))

``step`` returns the robot command ``clip(action, -1, 1) * scale + offset`` in the units the
contract's action names give. ``runner.fixed_commands`` (the contract's ``action.fixed``, e.g.
``{"gripper_open_fraction": 0.0}`` for Push) are the commands the controller must hold at these
values for the whole run: the task kept them constant in training and the policy does not
output them.

At load the runner checks that the file is the one exported: the graph's sha256 must match the
contract's ``sha256.onnx_graph`` and a ``policy.json`` beside ``policy.onnx`` must equal the
embedded contract (:mod:`robolearn.deploy.integrity`); any mismatch is a one-line
:class:`ContractError`. The file is read once and the session is built from the bytes checked.

``step`` runs ONNX Runtime on one intra-op thread through pre-bound input and output buffers, so
no array is allocated per call; the returned array is read-only and is overwritten by the next
call (copy it to keep it). ``step_terms`` takes the observation as the contract's terms, each a
float32 array of the term's shape (``(H, W)`` for an image, ``(width,)`` for a vector), and copies
them into views of the same pre-bound buffer (no allocation either).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnxruntime

from robolearn.deploy.contract import METADATA_KEY, ONNX_FILE, ContractError, loads, state_shape
from robolearn.deploy.integrity import check_contract_file, check_graph_hash, metadata

SAFE_ACTIONS = ("zeros", "hold")
#: training standard deviations (beyond the training range) at which an observation value is out of distribution
HEALTH_SIGMA = 4.0


class PolicyFileError(RuntimeError):
    """A missing or unloadable ``policy.onnx`` (one-line message naming the path)."""


class PolicyRunner:
    """Loads ``policy.onnx`` and its contract; ``reset()``, then ``step(obs) -> command`` per tick.

    ``safe_action`` chooses what ``step`` returns when the observation or the network output is
    not finite: ``"zeros"``, the zero action (command = the contract's ``offset``: standstill for
    velocity control, the default pose for position control), or ``"hold"``, the last good
    command. Such a step leaves the recurrent state as it was and is counted in
    ``nonfinite_obs`` / ``nonfinite_output``.

    ``fixed_commands`` (read-only, name -> value) are the commands the task held constant in
    training; send them alongside ``step``'s command, they are not among its outputs.

    ``step_terms(terms)`` is ``step`` with the observation given term by term (``term_shapes``,
    read-only: name -> shape in contract order, ``(H, W)`` for an image term).

    **Observation health.** With the training distribution in the contract (``obs.terms[i].stats``)
    each step's observation is compared with it: a value lying more than ``health_sigma`` training
    standard deviations from the training mean *and* outside the training range [min, max] is out
    of distribution (a lidar in the wrong units, a sign flipped, a missing scaling on the robot
    side). The step still runs; ``out_of_distribution`` counts such steps, ``last_out_of_distribution``
    says whether the last one was, and ``health()`` gives the counters with the steps per term.
    ``health_sigma=None`` turns the check off. Image terms are checked only for finiteness.
    """

    def __init__(self, path: str | Path, safe_action: str = "zeros", health_sigma: float | None = HEALTH_SIGMA):
        if safe_action not in SAFE_ACTIONS:
            raise ValueError(f"safe_action: expected one of {', '.join(SAFE_ACTIONS)}, got {safe_action!r}")
        if health_sigma is not None and not health_sigma > 0:
            raise ValueError(f"health_sigma: expected a positive number of standard deviations or None, got {health_sigma!r}")
        self.path = _resolve(Path(path))
        self.safe_action = safe_action
        data = _read(self.path)
        self.session = _session(data, self.path)
        self.contract = _checked_contract(data, self.path)
        #: commands to hold constant while the policy runs (name -> value in the name's units)
        self.fixed_commands = MappingProxyType({k: float(v) for k, v in self.contract["action"]["fixed"].items()})
        self.obs_dim = self.contract["obs"]["dim"]
        self.action_dim = self.contract["action"]["dim"]
        self.recurrent = self.contract["recurrent"]
        self._check_graph()

        # buffers bound to the session once: step() copies obs in and reads the outputs in place
        inputs, outputs = self.contract["inputs"], self.contract["outputs"]
        state_shape = _state_shape(self.recurrent, 1)
        self._obs = np.zeros((1, self.obs_dim), np.float32)
        #: term name -> its shape, and a view of the bound observation buffer with that shape
        self.term_shapes = MappingProxyType(_term_shapes(self.contract["obs"]["terms"]))
        self._term_views = _term_views(self._obs[0], self.term_shapes)
        self._actions = np.zeros((1, self.action_dim), np.float32)
        self._state_in = [np.zeros(state_shape, np.float32) for _ in inputs[1:]]
        self._state_out = [np.zeros(state_shape, np.float32) for _ in outputs[1:]]
        self._binding = self.session.io_binding()
        for name, array in zip(inputs, [self._obs, *self._state_in]):
            self._binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array))
        for name, array in zip(outputs, [self._actions, *self._state_out]):
            self._binding.bind_ortvalue_output(name, onnxruntime.OrtValue.ortvalue_from_numpy(array))

        self._scale = np.asarray(self.contract["action"]["scale"], np.float32)
        self._offset = np.asarray(self.contract["action"]["offset"], np.float32)
        self._clipped = np.zeros(self.action_dim, np.float32)
        self._command = np.zeros(self.action_dim, np.float32)
        self._zero_command = self._offset.copy()
        self._obs_finite = np.zeros(self.obs_dim, bool)
        self._actions_finite = np.zeros((1, self.action_dim), bool)
        self._state_finite = np.zeros(state_shape or (0,), bool)
        self._scratch_command = np.zeros(self.action_dim, np.float32)  # warm()'s
        self._scratch_state = np.zeros_like(self._state_out[0]) if self._state_out else None
        self._command_out = self._command.view()
        self._command_out.flags.writeable = False
        self._zero_command.flags.writeable = False
        self.nonfinite_obs = 0
        self.nonfinite_output = 0
        self._init_health(health_sigma)
        self.reset()

    def _init_health(self, sigma: float | None) -> None:
        """The allowed interval of every observation value (``[lo, hi]``: the training range widened
        to ``sigma`` standard deviations around the mean; unbounded without statistics) and the
        buffers the per-step check writes into."""
        terms = self.contract["obs"]["terms"]
        self._lo = np.full(self.obs_dim, -np.inf, np.float32)
        self._hi = np.full(self.obs_dim, np.inf, np.float32)
        self.health_sigma = sigma
        start = 0
        for term in terms:
            stats, sl = term.get("stats"), slice(start, start + term["width"])
            start += term["width"]
            if stats is None or sigma is None:
                continue
            self._lo[sl], self._hi[sl] = allowed_range(stats, sigma)
        #: whether any value is checked (a contract without statistics has nothing to compare with)
        self.health_checked = bool(np.isfinite(self._lo).any())
        self._term_names = [term["name"] for term in terms]
        self._term_starts = np.cumsum([0] + [term["width"] for term in terms[:-1]]).astype(np.intp)
        self._outside = np.zeros(self.obs_dim, bool)
        self._above = np.zeros(self.obs_dim, bool)
        self._term_outside = np.zeros(len(terms), bool)
        self._term_counts = np.zeros(len(terms), np.int64)
        self.steps = 0
        self.out_of_distribution = 0
        self.last_out_of_distribution = False

    def health(self) -> dict[str, Any]:
        """The health counters: steps run, steps with a non-finite observation or output, steps
        with an observation out of the training distribution, and those per term."""
        return {"steps": self.steps, "nonfinite_obs": self.nonfinite_obs, "nonfinite_output": self.nonfinite_output,
                "out_of_distribution": self.out_of_distribution, "health_sigma": self.health_sigma,
                "out_of_distribution_terms": {name: int(count) for name, count in zip(self._term_names, self._term_counts)
                                              if count}}

    def _check_health(self, count: bool = True) -> None:
        """Flag the observation in the bound buffer when a value lies outside its allowed interval
        (``count=False``: compare only, as :meth:`warm` does)."""
        obs = self._obs[0]
        np.less(obs, self._lo, out=self._outside)
        np.greater(obs, self._hi, out=self._above)
        np.logical_or(self._outside, self._above, out=self._outside)
        outside = bool(self._outside.any())
        if not count:
            return
        self.last_out_of_distribution = outside
        if outside:
            self.out_of_distribution += 1
            np.logical_or.reduceat(self._outside, self._term_starts, out=self._term_outside)
            np.add(self._term_counts, self._term_outside, out=self._term_counts)

    def reset(self) -> None:
        """Start an episode: zero the recurrent state (a transformer's context: no earlier step); the
        last command becomes the zero action's."""
        for state in self._state_in:
            state.fill(0.0)
        np.copyto(self._command, self._offset)

    def warm(self) -> None:
        """Go through everything :meth:`step` does, on the observation already in the buffer, and
        keep nothing: no state, command or counter changes. At a low control rate the code and data
        of a step (the interpreter's, numpy's, ONNX Runtime's, the weights) leave the caches between
        ticks; called shortly before a tick, this brings them back, so the tick's ``step`` runs
        nearer its hot-loop latency (``robolearn deploy-bench --rate`` measures it)."""
        obs = self._obs[0]
        np.copyto(obs, obs)
        np.isfinite(obs, out=self._obs_finite).all()
        if self.health_checked:
            self._check_health(count=False)
        self._run(commit=False)

    def step(self, obs: np.ndarray) -> np.ndarray:
        """One control tick: float32 observation ``(obs_dim,)`` -> float32 command ``(action_dim,)``."""
        if type(obs) is not np.ndarray or obs.dtype != np.float32 or obs.shape != (self.obs_dim,):
            raise ValueError(f"obs: expected a float32 array of shape ({self.obs_dim},), got {_describe(obs)}")
        self.steps += 1
        if not np.isfinite(obs, out=self._obs_finite).all():
            self.nonfinite_obs += 1
            return self._safe()
        np.copyto(self._obs[0], obs)
        if self.health_checked:
            self._check_health()
        return self._run()

    def step_terms(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        """One control tick from the observation's terms (name -> float32 array of the term's shape
        in ``term_shapes``: ``(H, W)`` for an image, row 0 at the top, ``(width,)`` for a vector),
        every term of the contract once; -> float32 command ``(action_dim,)``, as :meth:`step`.
        A missing, unknown or misshapen term is a one-line ``ValueError`` naming it."""
        if len(terms) != len(self._term_views):
            self._check_term_names(terms)
        for name, view in self._term_views.items():
            value = terms.get(name)
            if type(value) is not np.ndarray or value.dtype != np.float32 or value.shape != view.shape:
                self._check_term_names(terms)
                raise ValueError(_term_problem(name, value, view.shape))
            np.copyto(view, value)
        self.steps += 1
        if not np.isfinite(self._obs[0], out=self._obs_finite).all():
            self.nonfinite_obs += 1
            return self._safe()
        if self.health_checked:
            self._check_health()
        return self._run()

    def _check_term_names(self, terms: Mapping[str, np.ndarray]) -> None:
        for name in self._term_views:
            if name not in terms:
                raise ValueError(f"obs term {name!r}: missing (the policy reads {', '.join(self._term_views)})")
        for name in terms:
            if name not in self._term_views:
                raise ValueError(f"obs term {name!r}: unknown (the policy reads {', '.join(self._term_views)})")

    def _run(self, commit: bool = True) -> np.ndarray:
        """The network on the observation in the bound buffer; the command, or the safe action
        (``commit=False``: the same work into scratch buffers, the state and command untouched)."""
        self.session.run_with_iobinding(self._binding)
        finite = (np.isfinite(self._actions, out=self._actions_finite).all()
                  and all(np.isfinite(s, out=self._state_finite).all() for s in self._state_out))
        if not commit:
            for state_out in self._state_out:
                np.copyto(self._scratch_state, state_out)
            self._command_from_actions(self._scratch_command)
            return self._command_out
        if not finite:
            self.nonfinite_output += 1
            return self._safe()
        for state_in, state_out in zip(self._state_in, self._state_out):
            np.copyto(state_in, state_out)
        self._command_from_actions(self._command)
        return self._command_out

    def _command_from_actions(self, out: np.ndarray) -> None:
        """``clip(actions, -1, 1) * scale + offset`` into ``out``."""
        np.minimum(self._actions[0], 1.0, out=self._clipped)  # two ufuncs: half the time of np.clip
        np.maximum(self._clipped, -1.0, out=self._clipped)
        np.multiply(self._clipped, self._scale, out=out)
        np.add(out, self._offset, out=out)

    def _safe(self) -> np.ndarray:
        return self._command_out if self.safe_action == "hold" else self._zero_command

    def _check_graph(self) -> None:
        """The graph's inputs and outputs must be the ones the contract names, with its shapes."""
        state = _state_shape(self.recurrent, None)
        expected = {"obs": [None, self.obs_dim], "actions": [None, self.action_dim]}
        for name in self.contract["inputs"][1:] + self.contract["outputs"][1:]:
            expected[name] = state
        for kind, args, names in (("inputs", self.session.get_inputs(), self.contract["inputs"]),
                                  ("outputs", self.session.get_outputs(), self.contract["outputs"])):
            found = [arg.name for arg in args]
            if found != names:
                raise ContractError(f"{self.path}: contract key {kind!r}: contract names {names}, the graph has {found}")
            for arg in args:
                shape = [d if isinstance(d, int) else None for d in arg.shape]
                if arg.type != "tensor(float)" or shape != expected[arg.name]:
                    raise ContractError(f"{self.path}: graph {kind[:-1]} {arg.name!r} is {arg.type} {arg.shape}, "
                                        f"the contract implies float32 {expected[arg.name]} (None = batch)")


def allowed_range(stats: Mapping[str, Any], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per value of a term, the interval its observations may take (float64 ``lo``, ``hi``): the
    training mean +- ``sigma`` training standard deviations (at least 1e-4), widened to the
    training range [min, max] where the contract has it."""
    mean = np.asarray(stats["mean"], np.float64)
    std = np.maximum(np.asarray(stats["std"], np.float64), 1e-4)
    lo, hi = mean - sigma * std, mean + sigma * std
    if stats.get("min") is not None:
        lo, hi = np.minimum(lo, stats["min"]), np.maximum(hi, stats["max"])
    return lo, hi


def _state_shape(recurrent: dict[str, Any] | None, batch: int | None) -> list[int | None] | None:
    """Each state input's shape (``[layers, batch, hidden]``, a transformer's ``[rows, batch, width]``;
    None: the dynamic batch axis), or None for a feed-forward policy."""
    return list(state_shape(recurrent, batch)) if recurrent else None


def _resolve(path: Path) -> Path:
    """``policy.onnx`` itself, or the export directory that holds it."""
    file = path / ONNX_FILE if path.is_dir() else path
    if not file.is_file():
        raise PolicyFileError(f"{file}: no such file (expected {ONNX_FILE} or its export directory)")
    return file


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise PolicyFileError(f"{path}: cannot read ({err.strerror or err})") from None


def _session(data: bytes, path: Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on one thread, built from the model bytes the contract checks cover."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable models
        raise PolicyFileError(f"{path}: not a loadable ONNX model ({str(err).splitlines()[0][:160]})") from None


def _checked_contract(data: bytes, path: Path) -> dict[str, Any]:
    """The embedded contract, validated, with the graph hash and ``policy.json`` checked against it."""
    props = metadata(data, str(path))
    if METADATA_KEY not in props:
        raise ContractError(f"{path}: no contract in the ONNX metadata (key {METADATA_KEY!r}); "
                            "export the policy with `robolearn export`")
    contract = loads(props[METADATA_KEY], str(path))
    check_graph_hash(data, contract, str(path))
    check_contract_file(contract, path)
    return contract


def _term_shapes(terms: list[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    """Contract terms -> name -> shape: ``shape`` for an image, ``(width,)`` for a vector."""
    return {term["name"]: tuple(term.get("shape", (term["width"],))) for term in terms}


def _term_views(obs: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Views of the flat ``obs`` buffer, one per term, in the term's shape (row-major)."""
    views, start = {}, 0
    for name, shape in shapes.items():
        width = int(np.prod(shape))
        views[name] = obs[start:start + width].reshape(shape)
        start += width
    return views


def _term_problem(name: str, value: object, shape: tuple[int, ...]) -> str:
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        return f"obs term {name!r}: expected shape {shape}, got {value.shape}"
    return f"obs term {name!r}: expected a float32 array of shape {shape}, got {_describe(value)}"


def _describe(obs: object) -> str:
    if isinstance(obs, np.ndarray):
        return f"{obs.dtype} array of shape {obs.shape}"
    return type(obs).__name__
