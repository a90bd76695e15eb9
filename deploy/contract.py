"""The policy contract: what an exported policy expects and returns, as one JSON object.

The same JSON text is written to ``policy.json`` and embedded in ``policy.onnx`` under the
metadata key ``robolearn.contract``. Plain Python (no numpy, no torch), so the onboard
:class:`robolearn.deploy.PolicyRunner` reads it with nothing but the standard library::

    {"format": "robolearn.policy/2", "task": "robolearn/Nav-v0",
     "obs": {"dim": 23, "dtype": "float32", "normalized_in_graph": true,
             "terms": [{"name": "goal", "width": 3, "units": "m, unitless", "frame": "robot (x forward, ...)",
                        "elements": ["distance_m", "cos_bearing", "sin_bearing"], "meaning": "...",
                        "stats": {"mean": [...], "std": [...], "min": [...], "max": [...]}}, ...,
                       {"name": "depth", "width": 768, "shape": [24, 32], "units": "m", ...}],
             "stats": {"samples": 2000000, "source": "..."}},
     "action": {"dim": 2, "names": [...], "scale": [...], "offset": [...], "clip": [-1.0, 1.0],
                "command": "clip(actions, -1, 1) * scale + offset",
                "fixed": {"gripper_open_fraction": 0.0, ...},
                "space": {"name": "ee_delta", "frame": "arm_base"}},
     "control_period_s": 0.05,
     "trained_with": {"action_latency_steps": [0, 3], "action_latency_s": [0.0, 0.15],
                      "obs_latency_steps": [0, 0], "obs_latency_s": [0.0, 0.0],
                      "randomization": {"motor_gain": {"target": "actuator_gain", "range": [0.6, 1.8]}, ...}} | null,
     "recurrent": null | {"cell": "lstm", "layers": 1, "hidden_size": 128,
                          "state_shape": ["layers", "batch", "hidden_size"]}
                       | {"cell": "transformer", "context": 32, "layers": 2, "heads": 4, "width": 64,
                          "rows": 125, "state_shape": ["rows", "batch", "width"]},
     "inputs": ["obs"(, "h_in"(, "c_in") | , "ctx_in")],
     "outputs": ["actions"(, "h_out"(, "c_out") | , "ctx_out")],
     "exporter": {"torch": ..., "onnx": ..., "onnxscript": ..., "onnxruntime": ..., "opset": 18},
     "parity": {"steps": 100, "envs": 4, "tolerance": 1e-05, "max_abs_diff": {"onnxruntime": ..., ...}},
     "sha256": {"onnx_graph": ..., "policy.pt": ...},
     "source": {"run": ..., "checkpoint": ..., "iteration": ..., "weights": "average" | "last"} | null}

``obs`` is one flat float32 vector, the terms' values one after another in ``obs.terms`` order. A
term with a ``shape`` (an image: ``[H, W]``, product = width) is stored row-major in its slice;
a term without one is a vector of ``width`` values. Beside ``name``, ``width`` and ``shape`` a term
carries what the task says about it (the env's ``obs_term_info``, e.g. a depth image's
``"units": "m"``, ``"invalid_value": 0.0``, ``"layout": "row-major, row 0 at the top"``, ``"near"``,
``"far"``); these are for the people and code that feed the policy, the runner checks only shapes.
Every bundled task gives each term its ``units``, ``frame`` and ``meaning`` (and ``elements``, the
name of each value, where that helps). ``stats`` (vector terms of a policy with an observation
normaliser) is the distribution the policy saw in training, per value: ``mean``, ``std``, and
``min`` / ``max`` (null when the checkpoint predates their recording); ``PolicyRunner``'s health
check and ``robolearn obs-report`` compare robot observations with it.

``trained_with`` says what the policy met in training that the robot must match or stay within:
the delay from observation to actuation it was trained with (``action_latency_steps`` /
``obs_latency_steps``, control steps, and the same in seconds) and the final range of every
randomized parameter (after ADR); null for a policy exported without its training run.

The graph's ``actions`` are the policy's deterministic (mean) actions in [-1, 1] units; scale
(never zero) and offset are applied outside the graph. ``action.fixed`` names the robot commands
the task holds constant while the policy runs (e.g. Push keeps the gripper open), with the value to
send for each, in the units its name gives; ``{}`` when there are none. They are not policy
outputs: no fixed name is also in ``action.names``. ``action.space`` (optional; the arm tasks
write it) says what the commands move: ``joint_delta`` (joint-target changes) or ``ee_delta``
(end-effector displacements, and yaw, in the frame of the body ``frame`` names, the arm's base:
the robot turns them into joint targets with its own IK).

A policy with memory takes its state as inputs and returns the next state as outputs of the same
shape (``state_shape``: the names of ``recurrent``'s sizes, ``batch`` the batch axis), e.g. ``obs,
h_in, c_in -> actions, h_out, c_out`` for an LSTM; the caller feeds each output back as the next
step's input and zeroes the state at an episode start. A transformer's state is its context
``ctx`` ``[rows, batch, width]`` (rows = 2 · layers · (context − 1) + 1: each block's keys, then
values, of the previous context − 1 steps and a counter of the valid ones, see
:mod:`robolearn.models.attention`); zeros mean "no earlier step of this episode".

``sha256.onnx_graph`` is the sha256 of the ONNX ``graph`` field's bytes as stored in
``policy.onnx`` (weights included; the metadata that carries this contract is outside it), see
:mod:`robolearn.deploy.integrity`; ``PolicyRunner`` checks it at load. ``sha256["policy.pt"]``
hashes the TorchScript file.

Format history: ``robolearn.policy/2`` added ``action.fixed`` and defined ``sha256.onnx_graph``
over the stored graph bytes (``/1`` hashed a re-serialisation the runtime cannot reproduce);
a ``/1`` file must be re-exported. Image terms (``shape`` and the task's term metadata) were added
within ``/2``: the keys are optional, so earlier ``/2`` files (vector terms only) still load, and
an earlier runner reads a file with images as a flat vector of the same width. So were the terms'
``units`` / ``frame`` / ``meaning`` / ``elements`` / ``stats``, ``obs.stats`` and ``trained_with``:
optional, checked when present.
"""

from __future__ import annotations

import json
import math
from typing import Any

FORMAT = "robolearn.policy/2"
FORMAT_PREFIX = "robolearn.policy/"
ONNX_FILE = "policy.onnx"
CONTRACT_FILE = "policy.json"
METADATA_KEY = "robolearn.contract"
STATE_NAMES = {"lstm": ("h", "c"), "gru": ("h",), "transformer": ("ctx",)}
#: the sizes each cell's ``recurrent`` section gives (positive integers)
STATE_KEYS = {"lstm": ("layers", "hidden_size"), "gru": ("layers", "hidden_size"),
              "transformer": ("context", "layers", "heads", "width", "rows")}
STATE_SHAPE = ["layers", "batch", "hidden_size"]
#: what ``action.space.name`` may say: the arm's joint-target deltas, or end-effector deltas in ``action.space.frame``
ACTION_SPACES = ("joint_delta", "ee_delta")
CONTEXT_SHAPE = ["rows", "batch", "width"]


class ContractError(ValueError):
    """A missing or invalid contract; the one-line message names the file and the key."""


def io_names(recurrent: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Graph input and output names: ``obs[, h_in[, c_in]]`` and ``actions[, h_out[, c_out]]``."""
    states = STATE_NAMES[recurrent["cell"]] if recurrent else ()
    return ["obs", *(f"{s}_in" for s in states)], ["actions", *(f"{s}_out" for s in states)]


def state_shape_names(recurrent: dict[str, Any]) -> list[str]:
    """The contract's ``recurrent.state_shape`` for this cell: each state tensor's axes, named."""
    return CONTEXT_SHAPE if recurrent["cell"] == "transformer" else STATE_SHAPE


def state_shape(recurrent: dict[str, Any], batch: int | None) -> tuple[int | None, ...]:
    """The shape of each state input and output at this batch size (None: the dynamic batch axis)."""
    return tuple(batch if name == "batch" else recurrent[name] for name in state_shape_names(recurrent))


def dumps(contract: dict[str, Any]) -> str:
    """The contract's JSON text (the exact text stored in ``policy.json`` and the ONNX metadata)."""
    return json.dumps(contract, indent=2) + "\n"


def loads(text: str, source: str) -> dict[str, Any]:
    """Parse and validate contract JSON text read from ``source``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ContractError(f"{source}: contract is not valid JSON ({err})") from None
    return validate(data, source)


def validate(contract: Any, source: str) -> dict[str, Any]:
    """Check every key a runner relies on; raise :class:`ContractError` naming the first bad one."""
    check = _Checker(source)
    check.that(isinstance(contract, dict), "", f"expected a JSON object, got {type(contract).__name__}")
    _check_format(check, contract.get("format"))
    check.text(contract, "task")
    _check_obs(check, check.section(contract, "obs"))
    _check_action(check, check.section(contract, "action"))

    period = contract.get("control_period_s")
    check.that(isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0,
               "control_period_s", f"expected a positive number of seconds, got {period!r}")

    if contract.get("trained_with") is not None:
        _check_trained_with(check, contract["trained_with"])
    recurrent = contract.get("recurrent", "missing")
    if recurrent is not None:
        _check_recurrent(check, recurrent)
    inputs, outputs = io_names(recurrent)
    check.that(contract.get("inputs") == inputs, "inputs", f"expected {inputs}, got {contract.get('inputs')!r}")
    check.that(contract.get("outputs") == outputs, "outputs", f"expected {outputs}, got {contract.get('outputs')!r}")
    for key in ("exporter", "parity"):
        check.section(contract, key)
    sha256 = check.section(contract, "sha256")
    check.that(isinstance(sha256.get("onnx_graph"), str), "sha256.onnx_graph",
               f"expected a sha256 hex string, got {sha256.get('onnx_graph')!r}")
    source_info = contract.get("source", "missing")
    check.that(source_info is None or isinstance(source_info, dict), "source", f"expected null or an object, got {source_info!r}")
    return contract


def _check_format(check: _Checker, found: Any) -> None:
    if isinstance(found, str) and found.startswith(FORMAT_PREFIX) and found != FORMAT:
        check.that(False, "format", f"{found!r} is not this runner's {FORMAT!r}: re-export the policy with "
                                    "this version (robolearn export RUN_DIR)")
    check.that(found == FORMAT, "format", f"expected {FORMAT!r}, got {found!r}")


def _check_obs(check: _Checker, obs: dict) -> None:
    obs_dim = check.positive_int(obs, "obs.dim")
    check.that(obs.get("dtype") == "float32", "obs.dtype", f"expected 'float32', got {obs.get('dtype')!r}")
    terms = check.list_of(obs, "obs.terms", dict)
    widths = [check.positive_int(term, f"obs.terms[{i}].width") for i, term in enumerate(terms)]
    for i, term in enumerate(terms):
        check.text(term, f"obs.terms[{i}].name")
        if "shape" in term:
            key, shape = f"obs.terms[{i}].shape", term["shape"]
            check.that(isinstance(shape, list) and len(shape) >= 1 and all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape), key,
                f"expected a list of positive integers, got {shape!r}")
            check.that(math.prod(shape) == widths[i], key, f"{shape} holds {math.prod(shape)} values, the width is "
                                                            f"{widths[i]}")
        for key in ("units", "frame", "meaning"):
            if key in term:
                check.text(term, f"obs.terms[{i}].{key}")
        if "stats" in term:
            _check_stats(check, term["stats"], f"obs.terms[{i}].stats", widths[i])
    names = [term["name"] for term in terms]
    check.that(len(set(names)) == len(names), "obs.terms", f"term names repeat: {names}")
    check.that(sum(widths) == obs_dim, "obs.terms", f"widths sum to {sum(widths)}, obs.dim is {obs_dim}")


def _check_stats(check: _Checker, stats: Any, key: str, width: int) -> None:
    check.that(isinstance(stats, dict), key, f"expected an object, got {stats!r}")
    for name in ("mean", "std", "min", "max"):
        values = stats.get(name, "missing")
        if values is None and name in ("min", "max"):
            continue
        check.that(isinstance(values, list) and len(values) == width and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values),
            f"{key}.{name}", f"expected {width} finite numbers, got {values!r}")
    check.that(all(v >= 0 for v in stats["std"]), f"{key}.std", "negative standard deviation")


def _check_trained_with(check: _Checker, trained_with: Any) -> None:
    check.that(isinstance(trained_with, dict), "trained_with", f"expected null or an object, got {trained_with!r}")
    for kind in ("action_latency_steps", "obs_latency_steps"):
        value = trained_with.get(kind)
        check.that(isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value) and value[0] <= value[1],
            f"trained_with.{kind}", f"expected [lo, hi] whole control steps, got {value!r}")


def _check_action(check: _Checker, action: dict) -> None:
    action_dim = check.positive_int(action, "action.dim")
    for key, kind in (("names", str), ("scale", (int, float)), ("offset", (int, float))):
        values = check.list_of(action, f"action.{key}", kind)
        check.that(len(values) == action_dim, f"action.{key}", f"expected {action_dim} entries, got {len(values)}")
        if kind is not str:
            check.that(all(math.isfinite(v) for v in values), f"action.{key}", f"non-finite entry in {values}")
    names = action["names"]
    check.that(all(name for name in names) and len(set(names)) == len(names), "action.names",
               f"expected distinct non-empty names, got {names}")
    check.that(all(v != 0 for v in action["scale"]), "action.scale", f"zero entry in {action['scale']}")
    check.that(action.get("clip") == [-1.0, 1.0], "action.clip", f"expected [-1.0, 1.0], got {action.get('clip')!r}")
    fixed = check.section(action, "action.fixed")
    for name, value in fixed.items():
        key = f"action.fixed.{name}"
        check.that(name != "", "action.fixed", "empty command name")
        check.that(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), key,
                   f"expected a finite number, got {value!r}")
        check.that(name not in names, key, "is also a policy output (in action.names); a command is either "
                                            "the policy's or fixed")
    if "space" in action:  # optional: contracts exported before it was added have none
        space = check.section(action, "action.space")
        check.that(space.get("name") in ACTION_SPACES, "action.space.name",
                   f"expected one of {list(ACTION_SPACES)}, got {space.get('name')!r}")
        if space["name"] == "ee_delta":
            check.text(space, "action.space.frame")


def _check_recurrent(check: _Checker, recurrent: Any) -> None:
    check.that(isinstance(recurrent, dict), "recurrent", f"expected null or an object, got {recurrent!r}")
    cell = recurrent.get("cell")
    check.that(cell in STATE_NAMES, "recurrent.cell", f"expected one of {sorted(STATE_NAMES)}, got {cell!r}")
    for key in STATE_KEYS[cell]:
        check.positive_int(recurrent, f"recurrent.{key}")
    names = state_shape_names(recurrent)
    check.that(recurrent.get("state_shape") == names, "recurrent.state_shape",
               f"expected {names}, got {recurrent.get('state_shape')!r}")
    if cell == "transformer":
        context, layers, heads, width = (recurrent[key] for key in ("context", "layers", "heads", "width"))
        check.that(context >= 2, "recurrent.context", f"expected at least 2 steps, got {context}")
        check.that(width % heads == 0, "recurrent.heads", f"width {width} does not split into {heads} heads")
        rows = 2 * layers * (context - 1) + 1
        check.that(recurrent["rows"] == rows, "recurrent.rows",
                   f"expected 2 * layers * (context - 1) + 1 = {rows}, got {recurrent['rows']}")


class _Checker:
    """Small helpers that raise :class:`ContractError` with ``source: contract key 'a.b': problem``."""

    def __init__(self, source: str):
        self.source = source

    def that(self, ok: bool, key: str, problem: str) -> None:
        if not ok:
            where = f"contract key {key!r}" if key else "contract"
            raise ContractError(f"{self.source}: {where}: {problem}")

    def _get(self, mapping: dict, key: str) -> Any:
        leaf = key.rsplit(".", 1)[-1]
        self.that(leaf in mapping, key, "missing")
        return mapping[leaf]

    def section(self, mapping: dict, key: str) -> dict:
        value = self._get(mapping, key)
        self.that(isinstance(value, dict), key, f"expected an object, got {value!r}")
        return value

    def text(self, mapping: dict, key: str) -> str:
        value = self._get(mapping, key)
        self.that(isinstance(value, str) and value != "", key, f"expected a non-empty string, got {value!r}")
        return value

    def positive_int(self, mapping: dict, key: str) -> int:
        value = self._get(mapping, key)
        self.that(isinstance(value, int) and not isinstance(value, bool) and value > 0, key,
                  f"expected a positive integer, got {value!r}")
        return value

    def list_of(self, mapping: dict, key: str, kind: type | tuple[type, ...]) -> list:
        value = self._get(mapping, key)
        self.that(isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value),
                  key, f"expected a list of {getattr(kind, '__name__', 'numbers')}, got {value!r}")
        return value
