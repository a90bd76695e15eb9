"""The ``randomization`` section: what a parameter may randomize (``RANDOMIZATION_TARGETS``),
its selection, ranges and stage, and the ADR settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from robolearn.config.base import Range, StrictModel


RANDOMIZATION_TARGETS = {
    # simulator physics, applied per env at reset through per-env model fields
    "geom_friction": "geoms", "body_mass": "bodies", "joint_damping": "joints", "armature": "joints",
    "actuator_gain": "actuators", "actuator_strength": "actuators", "gravity": None,
    "contact_timeconst": "geoms",  # s, the geoms' contact time constant (MuJoCo solref[0]): lower is stiffer
    # custom physics, applied inside step
    "action_latency": None, "action_noise": None, "action_deadband": None, "action_backlash": None,
    "push": "bodies",
    # the policy's whole observation delayed by whole control steps
    "obs_latency": None,
    # observation noise on terms of the policy group
    "obs_noise": "obs_terms", "obs_bias": "obs_terms", "obs_scale": "obs_terms",
    # depth-camera failures on a task's depth-image terms (robolearn.randomization.depth)
    "depth_noise": "obs_terms", "depth_dropout": "obs_terms", "depth_edge_holes": "obs_terms",
    "depth_latency": "obs_terms", "camera_pitch": "obs_terms",
    # scene layout: a task-declared parameter (Nav: obstacle_count, obstacle_size, goal_distance)
    "layout": "layout",
}


class Selection(StrictModel):
    """Which model elements a parameter acts on, by name."""

    geoms: list[str] | None = None
    bodies: list[str] | None = None
    joints: list[str] | None = None
    actuators: list[str] | None = None
    obs_terms: list[str] | None = None
    layout: str | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "Selection":
        for key, value in self:
            if value is not None and len(value) == 0:
                raise ValueError(f"{key}: an empty selection randomizes nothing (name at least one, or drop the "
                                 "parameter)")
        return self


class RangeStage(StrictModel):
    """A later range of a fixed parameter: once the training success rate (the trainer's window of
    finished episodes) first reaches ``success``, the parameter is sampled from ``range`` instead
    of its ``init_range``, whatever success does afterwards (an easy mix first, the full task later)."""

    success: float = Field(gt=0.0, le=1.0)
    range: Range


class RandomizationParam(StrictModel):
    """One randomized parameter (see DESIGN section 3). ``limits`` default to ``init_range``."""

    target: str
    select: Selection = Field(default_factory=Selection)
    op: Literal["scale", "add", "set"] = "scale"
    type: Literal["float", "int"] = "float"
    init_range: Range
    limits: Range | None = None
    delta: float = Field(0.0, ge=0.0)
    delta_style: Literal["additive", "multiplicative"] = "additive"
    every_s: float = Field(3.0, gt=0.0, description="push: mean seconds between pushes")
    stage: RangeStage | None = None

    @model_validator(mode="after")
    def _check(self) -> "RandomizationParam":
        if self.target not in RANDOMIZATION_TARGETS:
            raise ValueError(f"target: unknown target {self.target!r} (known: {', '.join(RANDOMIZATION_TARGETS)})")
        kind = RANDOMIZATION_TARGETS[self.target]
        given = {k for k, v in self.select.model_dump().items() if v is not None}
        if kind is None and given:
            raise ValueError(f"select: target {self.target!r} takes no selection, got {sorted(given)}")
        if kind is not None and given != {kind}:
            raise ValueError(f"select: target {self.target!r} needs select.{kind} (and nothing else)")
        limits = self.limits or self.init_range
        if not (limits.lo <= self.init_range.lo and self.init_range.hi <= limits.hi):
            raise ValueError(f"limits {[limits.lo, limits.hi]} do not contain init_range "
                             f"{[self.init_range.lo, self.init_range.hi]}")
        if self.op == "scale" and limits.lo <= 0:
            raise ValueError(f"scale ranges must be positive, got limits {[limits.lo, limits.hi]}")
        if self.type == "int" and not all(float(v).is_integer() for v in (*self.init_range.as_tuple(), *limits.as_tuple())):
            raise ValueError("int parameters need whole-number init_range and limits")
        if self.target.startswith(("depth_", "camera_")) and self.op == "scale":
            raise ValueError(f"{self.target} is a value of its own (0: no effect), not a scale of one: use op add or set")
        if self.target in ("action_latency", "obs_latency", "depth_latency") and self.type != "int":
            raise ValueError(f"{self.target} counts whole control steps: set type: int")
        if self.delta_style == "multiplicative" and limits.lo <= 0:
            raise ValueError("multiplicative delta needs positive limits")
        if self.stage is not None:
            if self.delta > 0:
                raise ValueError("stage: a staged parameter's ranges are fixed (ADR moves none): set delta 0")
            if not (limits.lo <= self.stage.range.lo and self.stage.range.hi <= limits.hi):
                raise ValueError(f"stage.range {[self.stage.range.lo, self.stage.range.hi]} is outside limits "
                                 f"{[limits.lo, limits.hi]}")
        if self.target == "contact_timeconst" and self.op == "set" and limits.lo <= 0:
            raise ValueError(f"contact_timeconst is seconds (> 0; MuJoCo reads a negative solref as a stiffness), "
                             f"got limits {[limits.lo, limits.hi]}")
        return self

    @property
    def limit_range(self) -> Range:
        return self.limits or self.init_range


class AdrConfig(StrictModel):
    """ADR switches: ``enabled`` samples boundary episodes and moves ranges; ``update: false``
    freezes the ranges (plain domain randomization over them)."""

    enabled: bool = False
    update: bool = True
    boundary_prob: float = Field(0.5, ge=0.0, le=1.0)
    queue_length: int = Field(240, gt=0)
    t_low: float = Field(0.4, description="in the objective's units (success: a rate in [0, 1])")
    t_high: float = 0.8
    objective: str = Field("success", description="the episode metric ADR thresholds")

    @model_validator(mode="after")
    def _thresholds(self) -> "AdrConfig":
        if self.t_low >= self.t_high:
            raise ValueError(f"t_low ({self.t_low}) must be below t_high ({self.t_high})")
        return self


class RandomizationConfig(StrictModel):
    adr: AdrConfig = Field(default_factory=AdrConfig)
    params: dict[str, RandomizationParam] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _deltas(self) -> "RandomizationConfig":
        if self.adr.enabled and self.adr.update:
            for name, param in self.params.items():
                moves = param.init_range.as_tuple() != param.limit_range.as_tuple() and param.stage is None
                if param.delta <= 0 and moves:
                    raise ValueError(f"params.{name}.delta: ADR needs a positive delta")
        return self
