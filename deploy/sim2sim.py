"""Sim-to-sim: the exported policy, run through :class:`~robolearn.deploy.PolicyRunner` (the code
that goes onboard), closed loop on its task under simulations that differ from the one it trained in.

A policy that only works with one integrator, one timestep and one contact model will not work on
metal; this finds that out before the robot does. Each *variant* is a
:class:`~robolearn.config.PhysicsConfig` (integrator, timestep at the same control period, solver
iterations and cone, contact softness, control-period jitter) and/or fixed randomization
parameters (``params``: the schema of ``randomization.params``, sampled over ``init_range``, never
grown: one and two steps of observation or action latency) and/or a held-out conditions file
(``conditions``: a ``configs/eval`` ranges file). :data:`DEFAULT_VARIANTS` are run unless a
variants file says ``replace: true``::

    replace: false          # true: only the variants below (the nominal run always comes first)
    variants:
      wet_floor:
        description: wheels at a third of their friction, rk4
        physics: {integrator: rk4}
        params:
          wheel_friction: {target: geom_friction, select: {geoms: [wheel_l, wheel_r]}, op: scale,
                           init_range: [0.3, 0.35]}
      field: {conditions: ../configs/eval/nav_field.yaml}   # relative to this file

Every variant runs the same episodes (the same seed, apart from training's and from ``eval``'s
held-out layouts) batched over many envs, one runner per env. A variant that changes nothing in
this model (the integrator it already uses) or a default conditions file that names elements the
model lacks is listed as skipped, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from robolearn.config import (Config, ConfigError, PhysicsConfig, RandomizationConfig, RandomizationParam,
                              StrictModel, first_error, read_yaml)

#: the default variants; each differs from training in one respect
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "integrator_rk4": {"description": "4th-order Runge-Kutta integrator", "physics": {"integrator": "rk4"}},
    "integrator_implicitfast": {"description": "implicit-in-velocity integrator (no Coriolis derivatives)",
                                "physics": {"integrator": "implicitfast"}},
    "integrator_euler": {"description": "semi-implicit Euler integrator", "physics": {"integrator": "euler"}},
    "timestep_half": {"description": "physics timestep / 2, same control period",
                      "physics": {"timestep_scale": 0.5}},
    "timestep_quarter": {"description": "physics timestep / 4, same control period",
                         "physics": {"timestep_scale": 0.25}},
    "solver_iterations_3": {"description": "3 solver and 3 line-search iterations",
                            "physics": {"solver_iterations": 3, "ls_iterations": 3}},
    "cone_pyramidal": {"description": "pyramidal friction cone", "physics": {"cone": "pyramidal"}},
    "cone_elliptic": {"description": "elliptic friction cone", "physics": {"cone": "elliptic"}},
    "contacts_soft": {"description": "softer contacts: solref time constant x2, solimp 0.8-0.9",
                      "physics": {"solref_timeconst_scale": 2.0, "solimp": [0.8, 0.9, 0.001, 0.5, 2.0]}},
    "contacts_stiff": {"description": "stiffer contacts: solimp 0.95-0.99",
                       "physics": {"solimp": [0.95, 0.99, 0.001, 0.5, 2.0]}},
    "control_jitter": {"description": "control period +-30 % per step",
                       "physics": {"control_jitter": 0.3}},
    **{f"obs_latency_{k}": {"description": f"observation {k} control step{'s' * (k > 1)} late",
                            "params": {"obs_latency": {"target": "obs_latency", "op": "set", "type": "int",
                                                       "init_range": [k, k]}}} for k in (1, 2)},
    **{f"action_latency_{k}": {"description": f"action applied {k} control step{'s' * (k > 1)} late",
                               "params": {"action_latency": {"target": "action_latency", "op": "set", "type": "int",
                                                             "init_range": [k, k]}}} for k in (1, 2)},
}
NOMINAL = "nominal"
#: the conditions files run by default: ``configs/eval`` of the working directory, else of the source tree
CONDITIONS_DIRS = (Path("configs/eval"), Path(__file__).resolve().parents[1] / "configs" / "eval")


class Variant(StrictModel):
    """One simulation the policy did not train in (see the module docstring)."""

    description: str = ""
    physics: PhysicsConfig = Field(default_factory=PhysicsConfig)
    params: dict[str, RandomizationParam] = Field(default_factory=dict)
    conditions: str | None = Field(None, description="a ranges file (params:), e.g. configs/eval/nav_field.yaml")


class VariantsFile(StrictModel):
    """A ``--variants`` file: variants that extend (or with ``replace: true`` replace) the defaults."""

    replace: bool = False
    variants: dict[str, Variant]


@dataclass
class Sim2SimResult:
    """The variants' rows (nominal first) and what the table reports."""

    task: str
    policy: str
    episodes: int
    seed: int
    threshold: float
    metric: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        """Variants whose success fell by more than the threshold below the nominal run's."""
        return [row["variant"] for row in self.rows if row.get("flagged")]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "policy": self.policy, "episodes": self.episodes, "seed": self.seed,
                "threshold": self.threshold, "metric": self.metric, "flagged": self.flagged, "variants": self.rows}

    def format(self) -> str:
        metric = self.metric or "-"
        lines = [f"sim2sim: {self.policy} ({self.task}), {self.episodes} episodes per variant, seed {self.seed}",
                 f"{'variant':26s}{'success':>9s}{'return':>9s}{metric:>15s}{'d success':>11s}  "]
        for row in self.rows:
            if "skipped" in row:
                lines.append(f"{row['variant']:26s}  skipped: {row['skipped']}")
                continue
            value = row.get(f"{self.metric}_mean") if self.metric else None
            mark = f"  << loses more than {self.threshold:.0%}" if row.get("flagged") else ""
            lines.append(f"{row['variant']:26s}{row['success_rate']:9.1%}{row['return_mean']:9.2f}"
                         f"{'-' if value is None else f'{value:.3f}':>15s}{row['success_delta']:+11.1%}{mark}")
        ran = [r for r in self.rows[1:] if "skipped" not in r]
        if ran:
            mean_loss = sum(-r["success_delta"] for r in ran) / len(ran)
            lines.append(f"mean success lost over {len(ran)} variants: {mean_loss:.1%}; "
                         f"{len(self.flagged)} lose more than {self.threshold:.0%}")
        return "\n".join(lines)


def load_variants(path: str | Path | None) -> dict[str, Variant]:
    """The variants to run: the defaults, extended or replaced by the file at ``path``. Relative
    ``conditions`` paths in the file are relative to it. One-line ConfigError for a bad file."""
    variants = {name: Variant.model_validate(data) for name, data in DEFAULT_VARIANTS.items()}
    if path is None:
        return variants
    data = read_yaml(path)
    try:
        parsed = VariantsFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: {first_error(err)}") from None
    if NOMINAL in parsed.variants:
        raise ConfigError(f"{path}: variants.{NOMINAL}: the name of the unchanged run; choose another")
    for name, variant in parsed.variants.items():
        if variant.conditions is not None and not Path(variant.conditions).is_absolute():
            variant.conditions = str(Path(path).parent / variant.conditions)
    return dict(parsed.variants) if parsed.replace else {**variants, **parsed.variants}


def policy_config(policy_path: str | Path, config_path: str | Path | None = None) -> Config:
    """The experiment an exported policy came from: ``config_path``, or the ``config.yaml`` of the
    run its contract names (``source.run``). One-line ConfigError when neither is there."""
    from robolearn.config import load_config
    from robolearn.deploy.contract import CONTRACT_FILE, ONNX_FILE
    from robolearn.run_dir import CONFIG_FILE

    import robolearn.envs  # noqa: F401  (registers the tasks whose config classes validate env)

    if config_path is not None:
        return load_config(config_path)
    path = Path(policy_path)
    contract_file = (path if path.is_dir() else path.parent) / CONTRACT_FILE
    try:
        contract = json.loads(contract_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{contract_file}: cannot read the contract ({err}); is {path} an export directory "
                          f"(with {ONNX_FILE} and {CONTRACT_FILE})?") from None
    run = (contract.get("source") or {}).get("run")
    if not run or not (Path(run) / CONFIG_FILE).is_file():
        raise ConfigError(f"{contract_file}: the training run's {CONFIG_FILE} is not at {run!r}; pass the "
                          "experiment config with --config")
    return load_config(Path(run) / CONFIG_FILE)


def default_conditions() -> list[Path]:
    """The held-out conditions files run by default (``configs/eval/*.yaml``)."""
    for folder in CONDITIONS_DIRS:
        if folder.is_dir():
            return sorted(folder.glob("*.yaml"))
    return []


def run_sim2sim(policy_path: str | Path, config: Config, variants: dict[str, Variant], *,
                conditions: list[Path] | None = None, episodes: int = 128, num_envs: int = 64,
                seed: int | None = None, threshold: float = 0.1) -> Sim2SimResult:
    """Run the exported policy at ``policy_path`` on ``config``'s task: the nominal simulation,
    then each variant, then each conditions file (those that fit the task's model)."""
    from robolearn.envs import get_task

    conditions = default_conditions() if conditions is None else conditions
    runs = {NOMINAL: Variant(description="the simulation the policy trained in")} | variants
    runs |= {f"conditions:{p.stem}": Variant(description=f"held-out conditions {p}", conditions=str(p))
             for p in conditions}
    task_metrics = get_task(config.env.task).env_cls.task_metrics
    seed = config.seed + 20_000 if seed is None else seed
    result = Sim2SimResult(config.env.task, str(policy_path), episodes, seed, threshold,
                           task_metrics[0] if task_metrics else None)
    nominal_model = None
    for name, variant in runs.items():
        row = {"variant": name, "description": variant.description}
        outcome = _run_variant(policy_path, config, variant, episodes, num_envs, seed, nominal_model,
                               optional=name.startswith("conditions:"))
        if isinstance(outcome, str):
            result.rows.append({**row, "skipped": outcome})
            continue
        metrics, model = outcome
        nominal_model = nominal_model or model
        result.rows.append({**row, **metrics})
    mark_losses(result.rows, threshold)
    return result


def mark_losses(rows: list[dict[str, Any]], threshold: float) -> None:
    """Each run row's difference to the first (nominal) row, ``flagged`` when it lost more success
    than ``threshold``."""
    base = rows[0]
    for i, row in enumerate(rows):
        if "skipped" in row:
            continue
        row["success_delta"] = row["success_rate"] - base["success_rate"]
        row["return_delta"] = row["return_mean"] - base["return_mean"]
        row["flagged"] = i > 0 and -row["success_delta"] > threshold


def _run_variant(policy_path, config: Config, variant: Variant, episodes: int, num_envs: int, seed: int,
                 nominal_model, optional: bool) -> tuple[dict[str, Any], Any] | str:
    """Metrics of one variant's episodes and its env's model, or why it was skipped."""
    from robolearn.deploy.closed_loop import RunnerPolicy
    from robolearn.envs import make_env
    from robolearn.envs.physics import physics_differs
    from robolearn.evaluation import eval_randomization, run_episodes

    if nominal_model is not None and not variant.conditions and not variant.params:
        if not physics_differs(nominal_model, variant.physics):
            return "the model already simulates this way"
    params = dict(variant.params)
    if variant.conditions:
        params |= eval_randomization(variant.conditions, config, {}).params
    randomization = RandomizationConfig(params=params) if params else None
    env_config = config.env.model_copy(update={"num_envs": min(num_envs, episodes)})
    try:
        env = make_env(env_config, seed=seed, randomization=randomization, physics=variant.physics)
    except ConfigError as err:
        if optional:  # a default conditions file written for another task or robot
            return f"does not fit this model ({str(err).split(': ', 1)[-1]})"
        raise
    try:
        policy = RunnerPolicy(policy_path, env, config.env.task)
        metrics = run_episodes(policy, env, episodes)
    finally:
        env.close()
    return metrics, env.model


def write_outputs(result: Sim2SimResult, out_dir: str | Path) -> list[Path]:
    """``sim2sim.json`` and ``sim2sim.png`` (success per variant, the nominal run's as a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robolearn.files import write_atomic

    out = Path(out_dir)
    json_path = write_atomic(out / "sim2sim.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    rows = [r for r in result.rows if "skipped" not in r]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.0))
    colors = ["tab:gray" if i == 0 else "tab:red" if r["flagged"] else "tab:blue" for i, r in enumerate(rows)]
    ax.bar(range(len(rows)), [100 * r["success_rate"] for r in rows], color=colors)
    nominal = 100 * rows[0]["success_rate"]
    ax.axhline(nominal, color="black", lw=0.8)
    ax.axhline(nominal - 100 * result.threshold, color="tab:red", lw=0.8, ls="--",
               label=f"nominal - {result.threshold:.0%}")
    ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 105)
    ax.set_title(f"sim2sim {result.task}: {Path(result.policy).name}", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    png_path = out / "sim2sim.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return [json_path, png_path]

