"""The policy contract: what an exported policy expects and returns, as one JSON object.

The same JSON text is written to ``policy.json`` and embedded in ``policy.onnx`` under the
metadata key ``robolearn.contract``. Plain Python (no numpy, no torch), so the onboard
:class:`robolearn.deploy.PolicyRunner` reads it with nothing but the standard library::

    {"format": "robolearn.policy/1", "task": "robolearn/Nav-v0",
     "obs": {"dim": 23, "dtype": "float32", "normalized_in_graph": true,
             "terms": [{"name": "goal", "width": 3}, ...]},
     "action": {"dim": 2, "names": [...], "scale": [...], "offset": [...], "clip": [-1.0, 1.0],
                "command": "clip(actions, -1, 1) * scale + offset"},
     "control_period_s": 0.05,
     "recurrent": null | {"cell": "lstm", "layers": 1, "hidden_size": 128,
                          "state_shape": ["layers", "batch", "hidden_size"]},
     "inputs": ["obs"(, "h_in"(, "c_in"))], "outputs": ["actions"(, "h_out"(, "c_out"))],
     "exporter": {"torch": ..., "onnx": ..., "onnxscript": ..., "onnxruntime": ..., "opset": 18},
     "parity": {"steps": 100, "envs": 4, "tolerance": 1e-05, "max_abs_diff": {"onnxruntime": ..., ...}},
     "sha256": {"onnx_graph": ..., "policy.pt": ...},
     "source": {"run": ..., "checkpoint": ..., "iteration": ...} | null}

The graph's ``actions`` are the policy's deterministic (mean) actions in [-1, 1] units; scale
and offset are applied outside the graph. ``sha256.onnx_graph`` hashes the serialised ONNX graph
(weights included; the metadata that carries this contract is outside it), ``sha256["policy.pt"]``
the TorchScript file.
"""

from __future__ import annotations

import json
import math
from typing import Any

FORMAT = "robolearn.policy/1"
METADATA_KEY = "robolearn.contract"
STATE_NAMES = {"lstm": ("h", "c"), "gru": ("h",)}
STATE_SHAPE = ["layers", "batch", "hidden_size"]


class ContractError(ValueError):
    """A missing or invalid contract; the one-line message names the file and the key."""


def io_names(recurrent: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Graph input and output names: ``obs[, h_in[, c_in]]`` and ``actions[, h_out[, c_out]]``."""
    states = STATE_NAMES[recurrent["cell"]] if recurrent else ()
    return ["obs", *(f"{s}_in" for s in states)], ["actions", *(f"{s}_out" for s in states)]


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
    check.that(contract.get("format") == FORMAT, "format", f"expected {FORMAT!r}, got {contract.get('format')!r}")
    check.text(contract, "task")

    obs = check.section(contract, "obs")
    obs_dim = check.positive_int(obs, "obs.dim")
    check.that(obs.get("dtype") == "float32", "obs.dtype", f"expected 'float32', got {obs.get('dtype')!r}")
    terms = check.list_of(obs, "obs.terms", dict)
    widths = [check.positive_int(term, f"obs.terms[{i}].width") for i, term in enumerate(terms)]
    for i, term in enumerate(terms):
        check.text(term, f"obs.terms[{i}].name")
    check.that(sum(widths) == obs_dim, "obs.terms", f"widths sum to {sum(widths)}, obs.dim is {obs_dim}")

    action = check.section(contract, "action")
    action_dim = check.positive_int(action, "action.dim")
    for key, kind in (("names", str), ("scale", (int, float)), ("offset", (int, float))):
        values = check.list_of(action, f"action.{key}", kind)
        check.that(len(values) == action_dim, f"action.{key}", f"expected {action_dim} entries, got {len(values)}")
        if kind is not str:
            check.that(all(math.isfinite(v) for v in values), f"action.{key}", f"non-finite entry in {values}")
    check.that(all(v != 0 for v in action["scale"]), "action.scale", f"zero entry in {action['scale']}")
    check.that(action.get("clip") == [-1.0, 1.0], "action.clip", f"expected [-1.0, 1.0], got {action.get('clip')!r}")

    period = contract.get("control_period_s")
    check.that(isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0,
               "control_period_s", f"expected a positive number of seconds, got {period!r}")

    recurrent = contract.get("recurrent", "missing")
    if recurrent is not None:
        check.that(isinstance(recurrent, dict), "recurrent", f"expected null or an object, got {recurrent!r}")
        check.that(recurrent.get("cell") in STATE_NAMES, "recurrent.cell",
                   f"expected one of {sorted(STATE_NAMES)}, got {recurrent.get('cell')!r}")
        check.positive_int(recurrent, "recurrent.layers")
        check.positive_int(recurrent, "recurrent.hidden_size")
        check.that(recurrent.get("state_shape") == STATE_SHAPE, "recurrent.state_shape",
                   f"expected {STATE_SHAPE}, got {recurrent.get('state_shape')!r}")
    inputs, outputs = io_names(recurrent)
    check.that(contract.get("inputs") == inputs, "inputs", f"expected {inputs}, got {contract.get('inputs')!r}")
    check.that(contract.get("outputs") == outputs, "outputs", f"expected {outputs}, got {contract.get('outputs')!r}")
    for key in ("exporter", "parity", "sha256"):
        check.section(contract, key)
    source_info = contract.get("source", "missing")
    check.that(source_info is None or isinstance(source_info, dict), "source", f"expected null or an object, got {source_info!r}")
    return contract


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
