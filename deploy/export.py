"""Export a trained policy: ``policy.onnx``, ``policy.pt`` and ``policy.json``, behind a parity gate.

``policy.onnx`` is one file (no external data), opset 18, with a dynamic batch axis and the
observation normaliser inside the graph; ``policy.pt`` is TorchScript with the same call
signature; ``policy.json`` is the contract (:mod:`robolearn.deploy.contract`), also embedded in the
ONNX metadata. Nothing is written unless every exported format reproduces the eager policy's
actions within ``1e-5`` over a 100-step rollout of the task (:mod:`robolearn.deploy.parity`) and
the contract passes the validator the robot's :class:`~robolearn.deploy.PolicyRunner` applies.
``sha256.onnx_graph`` is computed from the very bytes written to ``policy.onnx``
(:mod:`robolearn.deploy.integrity`). Files are replaced atomically with the usual umask-respecting
mode (:func:`robolearn.files.write_atomic`), model files first and ``policy.json`` last.

What is exported is a policy's *deployable actor* (``Policy.deployable_actor()``, see
:mod:`robolearn.models.policy`); any ``nn.Module`` with this interface can be exported:

* ``obs_dim``, ``action_dim``: ints;
* ``recurrent``: ``None``, ``{"cell": "lstm" | "gru", "layers": L, "hidden_size": H}``, or
  ``{"cell": "transformer", "context": K, "layers": L, "heads": h, "width": W, "rows": R}``;
* ``forward(obs)`` -> ``actions`` (feed-forward), ``forward(obs, h)`` -> ``(actions, h)`` (GRU),
  ``forward(obs, h, c)`` -> ``(actions, h, c)`` (LSTM), ``forward(obs, ctx)`` -> ``(actions, ctx)``
  (transformer), with ``obs`` ``[B, obs_dim]`` raw (not yet normalised) observations, ``actions``
  ``[B, action_dim]`` the mean action in [-1, 1] units (before clipping), each LSTM/GRU state
  ``[L, B, H]`` and a transformer's context ``[R, B, W]`` (R = 2·L·(K − 1) + 1, zeros at an
  episode start, see :mod:`robolearn.models.attention`). The observation normaliser belongs
  inside, and so does an image encoder: image terms arrive flattened row-major inside ``obs``
  (the contract's ``obs.terms`` give each term's ``shape``), so the graph input stays
  ``obs [batch, obs_dim]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import onnx
import onnxruntime
import onnxscript
import torch
from onnx.external_data_helper import uses_external_data
from torch import nn

from robolearn.deploy.contract import (CONTRACT_FILE, FORMAT, METADATA_KEY, ONNX_FILE, STATE_KEYS, ContractError,
                                       dumps, io_names, state_shape_names, validate)
from robolearn.deploy.integrity import append_metadata, graph_sha256
from robolearn.deploy.parity import Backend, DeployedActorPolicy, contract_state, rollout_parity, torch_backend
from robolearn.distributed import torch_threads
from robolearn.files import FileWriteError, write_atomic
from robolearn.models import Policy

TORCHSCRIPT_FILE = "policy.pt"
EXPORT_DIR = "export"
FORMAT_FILES = {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}
OPSET = 18
PARITY_STEPS = 100
PARITY_ENVS = 4
PARITY_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """The policy cannot be exported as asked (one-line message)."""


class ParityError(ExportError):
    """An exported format does not reproduce the eager policy; ``parity`` holds the figures."""

    def __init__(self, parity: dict[str, Any]):
        figures = ", ".join(f"{name} {diff:.3g}" for name, diff in parity["max_abs_diff"].items())
        super().__init__(f"parity check failed: max abs action difference to eager torch over {parity['steps']} "
                         f"steps x {parity['envs']} envs: {figures} (tolerance {parity['tolerance']:g}); "
                         "nothing written")
        self.parity = parity


@dataclass
class Export:
    """What an export wrote: the directory, the files and the contract."""

    out_dir: Path
    files: list[Path]
    contract: dict[str, Any]


def export_checkpoint(path: str | Path, out_dir: str | Path | None = None,
                      formats: Sequence[str] = tuple(FORMAT_FILES)) -> Export:
    """Export the policy of a checkpoint (file or run directory) into ``out_dir`` (default
    ``<run dir>/export``), checking parity on the checkpoint's own task."""
    from robolearn.checkpoint import load_policy
    from robolearn.envs import make_env

    policy, config, state = load_policy(path)
    checkpoint = Path(state["path"])
    run_dir = run_dir_of(checkpoint)
    env = make_env(config.env.model_copy(update={"num_envs": PARITY_ENVS, "nthread": 1}), seed=config.seed)
    try:
        return export_policy(policy, env, Path(out_dir) if out_dir else run_dir / EXPORT_DIR,
                             task=config.env.task, formats=formats, seed=config.seed,
                             source={"run": str(run_dir), "checkpoint": str(checkpoint), "iteration": state["iteration"],
                                     "weights": "average" if state.get("policy_average") else "last"},
                             trained_with=trained_with(config, state, env.control_dt))
    finally:
        env.close()


def trained_with(config, state: dict[str, Any], control_dt: float) -> dict[str, Any]:
    """What the policy met in training that the robot side must match or stay within: the latency
    between observation and action (the task's own ``env.action_latency`` plus randomized
    ``action_latency`` / ``obs_latency`` and, for a depth camera, ``depth_latency``, at the ranges
    ADR had reached) and every randomized parameter's final range."""
    from robolearn.evaluation import eval_randomization

    randomization = eval_randomization("train", config, state)
    ranges = {name: [round(p.init_range.lo, 9), round(p.init_range.hi, 9)] for name, p in randomization.params.items()}
    targets = {name: p.target for name, p in randomization.params.items()}
    task_latency = getattr(config.env, "action_latency", None)
    latency = {}
    kinds = ("action_latency", "obs_latency", *(["depth_latency"] if "depth_latency" in targets.values() else []))
    for kind in kinds:
        lo = hi = 0.0
        if kind == "action_latency" and task_latency is not None:
            lo, hi = float(task_latency.lo), float(task_latency.hi)
        for name, target in targets.items():
            if target == kind:
                lo, hi = lo + ranges[name][0], hi + ranges[name][1]
        latency[f"{kind}_steps"] = [int(lo), int(hi)]
        latency[f"{kind}_s"] = [round(lo * control_dt, 9), round(hi * control_dt, 9)]
    return {**latency, "randomization": {name: {"target": targets[name], "range": ranges[name]} for name in ranges}}


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory of a checkpoint file (``RUN/checkpoints/x.pt`` or ``RUN/x.pt``)."""
    from robolearn.checkpoint import CHECKPOINT_DIR

    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def default_out_dir(path: str | Path) -> Path:
    """Where ``export_checkpoint(path)`` writes by default: ``<run dir>/export``; resolves the
    checkpoint without loading it (:class:`~robolearn.checkpoint.CheckpointError` if missing)."""
    from robolearn.checkpoint import resolve_checkpoint

    return run_dir_of(resolve_checkpoint(path)) / EXPORT_DIR


def check_formats(formats: Sequence[str]) -> None:
    """``formats`` must be a non-empty subset of :data:`FORMAT_FILES` (raises :class:`ExportError`)."""
    unknown = sorted(set(formats) - set(FORMAT_FILES))
    if unknown or not formats:
        raise ExportError(f"formats: expected a non-empty subset of {','.join(FORMAT_FILES)}, got {','.join(formats) or 'none'}")


def export_policy(policy: Policy | nn.Module, env, out_dir: str | Path, *, task: str,
                  formats: Sequence[str] = tuple(FORMAT_FILES), source: dict[str, Any] | None = None,
                  seed: int = 0, trained_with: dict[str, Any] | None = None) -> Export:
    """Export ``policy`` for ``env``'s task: a robolearn :class:`~robolearn.models.Policy` (its
    ``deployable_actor()`` is exported, and parity is checked against the policy itself, run
    through its interface) or a bare deployable actor (see the module docstring).

    Every format is built in memory and replayed against the eager policy on ``env``; files are
    written only when all pass and the contract validates. Model files of formats not exported
    this time are removed from ``out_dir`` so that the directory always matches its contract.
    Raises :class:`ParityError`, or :class:`ExportError` (one line) for anything else.
    """
    check_formats(formats)
    statistics = obs_statistics(policy, env) if isinstance(policy, Policy) else {}
    reference = policy.eval() if isinstance(policy, Policy) else DeployedActorPolicy(policy)
    policy = policy.deployable_actor() if isinstance(policy, Policy) else policy
    _check_interface(policy, env)
    policy.eval()
    inputs, _ = io_names(policy.recurrent)
    example = _example_inputs(policy, batch=2)
    backends: dict[str, Backend] = {}
    models: dict[str, bytes] = {}
    with torch_threads(1):  # a batch of 4: more threads gain nothing, and collapse on a busy machine
        if "onnx" in formats:
            models[ONNX_FILE] = to_onnx(policy, example).SerializeToString()
            backends["onnxruntime"] = _onnxruntime_backend(models[ONNX_FILE], inputs)
        if "torchscript" in formats:
            models[TORCHSCRIPT_FILE] = to_torchscript(policy, example)
            with _quiet():
                backends["torchscript"] = torch_backend(torch.jit.load(io.BytesIO(models[TORCHSCRIPT_FILE])))
        figures = rollout_parity(reference, backends, policy.recurrent, env, PARITY_STEPS, seed)
    parity = {"steps": PARITY_STEPS, "envs": env.num_envs, "seed": seed, "tolerance": PARITY_TOLERANCE,
              "max_abs_diff": figures}
    if not all(diff <= PARITY_TOLERANCE for diff in figures.values()):
        raise ParityError(parity)

    sha256 = {}
    if ONNX_FILE in models:
        sha256["onnx_graph"] = graph_sha256(models[ONNX_FILE], "the exported ONNX model")
    if TORCHSCRIPT_FILE in models:
        sha256[TORCHSCRIPT_FILE] = hashlib.sha256(models[TORCHSCRIPT_FILE]).hexdigest()
    contract = build_contract(policy, env, task, parity, sha256, source, statistics, trained_with)
    try:
        validate(contract, f"{task} export")
    except ContractError as err:
        raise ExportError(f"{err}; nothing written") from None
    text = dumps(contract)
    if ONNX_FILE in models:
        models[ONNX_FILE] = append_metadata(models[ONNX_FILE], METADATA_KEY, text)  # the graph bytes stay as hashed
        if graph_sha256(models[ONNX_FILE], ONNX_FILE) != sha256["onnx_graph"]:
            raise ExportError("policy.onnx: graph bytes changed while adding the contract; nothing written")
    files = _write_export(Path(out_dir), {**models, CONTRACT_FILE: text.encode()}, formats)
    return Export(Path(out_dir), files, contract)


def _write_export(out_dir: Path, contents: dict[str, bytes], formats: Sequence[str]) -> list[Path]:
    """Write ``contents`` (name -> bytes) atomically in order and remove the files of formats not
    exported; a file-system error is a one-line :class:`ExportError`."""
    try:
        files = [write_atomic(out_dir / name, data) for name, data in contents.items()]
        for fmt, name in FORMAT_FILES.items():
            if fmt not in formats:
                (out_dir / name).unlink(missing_ok=True)
    except OSError as err:  # FileWriteError from write_atomic, or the removal of a stale file
        if not isinstance(err, FileWriteError):
            err = FileWriteError(err.filename or out_dir, err)
        raise ExportError(str(err)) from None
    return files


def build_contract(policy: nn.Module, env, task: str, parity: dict[str, Any], sha256: dict[str, str],
                   source: dict[str, Any] | None, statistics: dict[str, Any] | None = None,
                   trained_with: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contract of ``policy`` exported for ``env`` (see :mod:`robolearn.deploy.contract`);
    ``statistics`` (:func:`obs_statistics`) adds each vector term's training distribution."""
    layout = env.obs_layout["policy"]
    inputs, outputs = io_names(policy.recurrent)
    statistics = statistics or {}
    terms = [{**term, **({"stats": statistics["terms"][term["name"]]} if term["name"] in statistics.get("terms", {})
                         else {})} for term in obs_terms(env)]
    obs = {"dim": layout.size, "dtype": "float32", "normalized_in_graph": True, "terms": terms}
    if statistics:
        obs["stats"] = {"samples": statistics["samples"], "source": statistics["source"]}
    action = {"dim": len(env.action_names), "names": list(env.action_names),
              "scale": [float(v) for v in env.action_scale], "offset": [float(v) for v in env.action_offset],
              "clip": [-1.0, 1.0], "command": "clip(actions, -1, 1) * scale + offset",
              "fixed": {str(name): float(value) for name, value in getattr(env, "fixed_commands", {}).items()}}
    space = getattr(env, "action_space_info", None)  # e.g. {"name": "ee_delta", "frame": "arm_base"}
    if space:
        action["space"] = {str(key): str(value) for key, value in space.items()}
    return {
        "format": FORMAT,
        "task": task,
        "obs": obs,
        "action": action,
        "control_period_s": round(float(env.control_dt), 9),
        "trained_with": trained_with,
        "recurrent": (None if policy.recurrent is None
                      else {**policy.recurrent, "state_shape": state_shape_names(policy.recurrent)}),
        "inputs": inputs,
        "outputs": outputs,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                     "onnxruntime": onnxruntime.__version__, "opset": OPSET},
        "parity": parity,
        "sha256": sha256,
        "source": source,
    }


#: term keys the layout and the exporter set; a task's ``obs_term_info`` may not override them
LAYOUT_KEYS = ("name", "width", "shape", "stats")


def obs_statistics(policy: Policy, env) -> dict[str, Any]:
    """The training distribution of each vector term of the policy group, from the policy's
    observation normaliser (what the policy saw, randomization and noise included): per element
    mean, standard deviation, and the smallest and largest value (null where the checkpoint
    predates their recording). ``{}`` for a policy without a normaliser."""
    from robolearn.models import EmpiricalNormalizer

    normalizers = getattr(policy, "obs_normalizers", None)
    normalizer = normalizers["policy"] if normalizers is not None and "policy" in normalizers else None
    if not isinstance(normalizer, EmpiricalNormalizer) or normalizer.count.item() == 0:
        return {}
    values = {name: getattr(normalizer, name).detach().double().cpu() for name in ("mean", "var", "min", "max")}
    layout, terms, start = env.obs_layout["policy"], {}, 0
    for name, shape in layout.shapes.items():
        if len(shape) > 1:  # images are not normalised: their contract entry says their range
            continue
        width = layout.widths[name]
        window = {key: value[start:start + width] for key, value in values.items()}
        known = bool(window["min"].isfinite().all() and window["max"].isfinite().all())
        terms[name] = {"mean": _floats(window["mean"]), "std": _floats(window["var"].clamp_min(0).sqrt()),
                       "min": _floats(window["min"]) if known else None, "max": _floats(window["max"]) if known else None}
        start += width
    if start != normalizer.mean.numel():
        raise ExportError(f"the policy's observation normaliser holds {normalizer.mean.numel()} values, the task's "
                          f"vector terms {start}")
    return {"samples": int(normalizer.count.item()), "terms": terms,
            "source": "the policy's observation normaliser: every observation of training, randomization included"}


def _floats(values) -> list[float]:
    return [float(f"{v:.7g}") for v in values.tolist()]


def obs_terms(env) -> list[dict[str, Any]]:
    """The contract's ``obs.terms`` of ``env``'s policy group: name and width per term, the shape of
    an image term (``[H, W]``, row-major in its slice), and what the task's ``obs_term_info``
    (term -> dict of JSON values, optional) says about the term."""
    layout = env.obs_layout["policy"]
    info = getattr(env, "obs_term_info", None) or {}
    known = {term for group in env.obs_layout.values() for term in group.widths}
    for term, entry in info.items():
        if term not in known:
            raise ExportError(f"obs_term_info: {term!r} is not an observation term of the task "
                              f"(policy terms: {', '.join(layout.widths)})")
        clash = [key for key in entry if key in LAYOUT_KEYS]
        if clash:
            raise ExportError(f"obs_term_info[{term!r}]: {clash[0]!r} comes from the observation layout, not the task")
    terms = []
    for name, shape in layout.shapes.items():
        term: dict[str, Any] = {"name": name, "width": layout.widths[name]}
        if len(shape) > 1:
            term["shape"] = [int(d) for d in shape]
        for key, value in info.get(name, {}).items():
            term[key] = _plain(value, f"obs_term_info[{name!r}][{key!r}]")
        terms.append(term)
    return terms


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON data (numpy scalars and arrays, tuples become numbers and lists)."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise ExportError(f"{where}: expected JSON data (text, finite numbers, lists, objects), got {value!r}")


def to_onnx(policy: nn.Module, example: tuple[torch.Tensor, ...]) -> onnx.ModelProto:
    """The policy as one self-contained ONNX model (opset 18, batch axis dynamic)."""
    inputs, outputs = io_names(policy.recurrent)
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = {name: {0 if name == "obs" else 1: batch} for name in inputs}
    with _quiet():
        program = torch.onnx.export(named_io(policy), example, dynamo=True, opset_version=OPSET, input_names=inputs,
                                    output_names=outputs, dynamic_shapes=dynamic_shapes, external_data=False)
    model = program.model_proto
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise ExportError(f"ONNX export produced opset {opsets}, expected {OPSET}")
    if any(uses_external_data(tensor) for tensor in model.graph.initializer):
        raise ExportError("ONNX export put weights in external data; policy.onnx must be one file")
    if not model.graph.input[0].type.tensor_type.shape.dim[0].dim_param:
        raise ExportError("ONNX export fixed the batch axis; expected it dynamic")
    onnx.checker.check_model(model)
    return model


def to_torchscript(policy: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    """The policy traced to TorchScript (same inputs and outputs as the ONNX graph), serialised."""
    buffer = io.BytesIO()
    with _quiet():  # torch.jit is deprecated upstream, but it is what LibTorch controllers load
        torch.jit.save(torch.jit.trace(named_io(policy), example, check_trace=False), buffer)
    return buffer.getvalue()


class _FeedForwardIO(nn.Module):
    """``forward(obs)``: the policy under the contract's argument names (see :func:`named_io`)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)


class _GRUIO(_FeedForwardIO):
    def forward(self, obs: torch.Tensor, h_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(obs, h_in)


class _LSTMIO(_FeedForwardIO):
    def forward(self, obs: torch.Tensor, h_in: torch.Tensor,
                c_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.policy(obs, h_in, c_in)


class _ContextIO(_FeedForwardIO):
    def forward(self, obs: torch.Tensor, ctx_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(obs, ctx_in)


def named_io(policy: nn.Module) -> nn.Module:
    """The policy with the positional signature ``forward(obs[, h_in[, c_in]])`` or ``forward(obs,
    ctx_in)``, whatever its own ``forward`` looks like (e.g. ``*state``): both exporters take their
    argument names from it."""
    cell = policy.recurrent["cell"] if policy.recurrent else None
    return {None: _FeedForwardIO, "gru": _GRUIO, "lstm": _LSTMIO, "transformer": _ContextIO}[cell](policy).eval()


def _example_inputs(policy: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    obs = torch.randn(batch, policy.obs_dim, generator=torch.Generator().manual_seed(0))
    return (obs, *(torch.from_numpy(state) for state in contract_state(policy.recurrent, batch)))


def _check_interface(policy: nn.Module, env) -> None:
    """The policy has the exporter's interface and the env's observation and action sizes."""
    missing = [name for name in ("obs_dim", "action_dim", "recurrent") if not hasattr(policy, name)]
    if missing:
        raise ExportError(f"{type(policy).__name__} lacks {', '.join(missing)} (see robolearn.deploy.export)")
    recurrent = policy.recurrent
    if recurrent is not None and (recurrent.get("cell") not in STATE_KEYS
                                  or not all(isinstance(recurrent.get(k), int) for k in STATE_KEYS[recurrent["cell"]])):
        raise ExportError(f"{type(policy).__name__}.recurrent: expected None, {{'cell': 'lstm'|'gru', "
                          f"'layers': int, 'hidden_size': int}} or {{'cell': 'transformer', 'context': int, "
                          f"'layers': int, 'heads': int, 'width': int, 'rows': int}}, got {recurrent!r}")
    obs_dim, action_dim = env.obs_layout["policy"].size, len(env.action_names)
    if (policy.obs_dim, policy.action_dim) != (obs_dim, action_dim):
        raise ExportError(f"policy maps {policy.obs_dim} observations to {policy.action_dim} actions, "
                          f"the env has {obs_dim} and {action_dim}")
    obs_terms(env)  # the task's term metadata fits the contract (found before the slow part)


def _onnxruntime_backend(model_bytes: bytes, inputs: list[str]) -> Backend:
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return lambda *arrays: session.run(None, dict(zip(inputs, arrays)))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress lines and warnings (a failure still raises)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
