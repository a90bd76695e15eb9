"""The simulation-variant schema: :class:`PhysicsConfig`, the changes to a task's physics that keep
the task (``robolearn sim2sim`` variants, an env's ``physics`` argument). Not a section of the
experiment file; validated like one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from robolearn.config.base import StrictModel


class PhysicsConfig(StrictModel):
    """Changes to a task's simulation that keep the task itself (what the policy observes and
    commands, the control period): another integrator, a finer physics timestep, another contact
    solver setting. Each key left at None keeps the model's own value. ``robolearn sim2sim`` runs an
    exported policy under such variants (:mod:`robolearn.deploy.sim2sim`); an env takes one as its
    ``physics`` argument and applies it to the compiled model before simulating."""

    integrator: Literal["euler", "rk4", "implicit", "implicitfast"] | None = None
    timestep_scale: float | None = Field(None, gt=0.0, le=1.0, description=(
        "physics timestep x this, the control period kept (the control step runs more substeps); "
        "1 / scale must be a whole number"))
    solver_iterations: int | None = Field(None, gt=0, description="constraint solver iterations (opt.iterations)")
    ls_iterations: int | None = Field(None, gt=0, description="line-search iterations (opt.ls_iterations)")
    cone: Literal["pyramidal", "elliptic"] | None = None
    noslip_iterations: int | None = Field(None, ge=0, description=(
        "iterations of MuJoCo's noslip pass after the solver (opt.noslip_iterations; 0: none, contacts "
        "creep under a steady tangential load)"))
    solref_timeconst_scale: float | None = Field(None, gt=0.0, description=(
        "every contact's solref time constant x this (> 1: softer contacts); MuJoCo keeps it >= 2 timesteps"))
    solimp: list[float] | None = Field(None, description=(
        "every contact's solimp [dmin, dmax, width, midpoint, power] (dmin, dmax nearer 1: stiffer)"))
    control_jitter: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "each control step lasts the control period x (1 + u), u uniform in [-jitter, jitter], in whole "
        "physics steps (drawn per step, the same for every env of the batch)"))

    @model_validator(mode="after")
    def _check(self) -> "PhysicsConfig":
        if self.timestep_scale is not None and abs(1.0 / self.timestep_scale - round(1.0 / self.timestep_scale)) > 1e-6:
            raise ValueError(f"timestep_scale: 1 / {self.timestep_scale} is not a whole number (use 0.5, 0.25, ...)")
        if self.solimp is not None:
            if len(self.solimp) != 5:
                raise ValueError(f"solimp: expected 5 numbers [dmin, dmax, width, midpoint, power], got {self.solimp}")
            dmin, dmax, width, mid, power = self.solimp
            if not (0.0 < dmin <= dmax < 1.0 and width > 0 and 0.0 < mid < 1.0 and power >= 1.0):
                raise ValueError(f"solimp: expected 0 < dmin <= dmax < 1, width > 0, 0 < midpoint < 1, power >= 1, "
                                 f"got {self.solimp}")
        return self

    def is_nominal(self) -> bool:
        """True when it changes nothing."""
        return self == PhysicsConfig()
