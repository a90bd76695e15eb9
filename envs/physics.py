"""Simulation variants that keep the task: :class:`~robolearn.config.PhysicsConfig` applied to a
compiled model, and the number of physics steps in one control step.

``apply_physics`` edits the ``MjModel`` a task built before the batch copies it: the integrator,
the timestep (the caller keeps the control period by running more substeps), the iterations of the
solver, its line search and the noslip pass, the friction cone, and every contact's solref / solimp
(geoms and explicit contact pairs). ``control_substeps`` draws a control step's length when the period jitters.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robolearn.config import PhysicsConfig

INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "rk4": mujoco.mjtIntegrator.mjINT_RK4,
               "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
               "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST}
CONES = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}
#: PhysicsConfig keys that set an iteration count of ``MjModel.opt`` as given -> the option's name
ITERATION_OPTIONS = {"solver_iterations": "iterations", "ls_iterations": "ls_iterations",
                     "noslip_iterations": "noslip_iterations"}


def apply_physics(model: mujoco.MjModel, physics: PhysicsConfig) -> None:
    """Write ``physics`` into ``model`` (in place); keys left at None keep the model's values."""
    opt = model.opt
    if physics.integrator is not None:
        opt.integrator = INTEGRATORS[physics.integrator]
    if physics.timestep_scale is not None:
        opt.timestep = opt.timestep * physics.timestep_scale
    for key, option in ITERATION_OPTIONS.items():
        if getattr(physics, key) is not None:
            setattr(opt, option, getattr(physics, key))
    if physics.cone is not None:
        opt.cone = CONES[physics.cone]
    for solref, solimp in ((model.geom_solref, model.geom_solimp), (model.pair_solref, model.pair_solimp)):
        if physics.solref_timeconst_scale is not None:
            standard = solref[:, 0] > 0  # (timeconst, dampratio); negative values are (-stiffness, -damping)
            solref[standard, 0] *= physics.solref_timeconst_scale
        if physics.solimp is not None:
            solimp[:] = physics.solimp


def physics_differs(model: mujoco.MjModel, physics: PhysicsConfig) -> list[str]:
    """The keys of ``physics`` that change something in ``model`` (an integrator or cone the model
    already uses changes nothing)."""
    changed = []
    for key, value in physics.model_dump(exclude_none=True).items():
        if key == "integrator" and INTEGRATORS[value] == model.opt.integrator:
            continue
        if key == "cone" and CONES[value] == model.opt.cone:
            continue
        if key in ITERATION_OPTIONS and value == getattr(model.opt, ITERATION_OPTIONS[key]):
            continue
        if key in ("timestep_scale", "solref_timeconst_scale") and value == 1.0 or key == "control_jitter" and value == 0:
            continue
        changed.append(key)
    return changed


def substeps_per_control_step(control_hz: float, nominal_timestep: float, physics: PhysicsConfig) -> int:
    """Physics steps per control step at the (possibly scaled) timestep: the nominal count times
    ``1 / timestep_scale``, so the control period stays the nominal one exactly."""
    nominal = max(1, int(round(1.0 / (control_hz * nominal_timestep))))
    return nominal * (int(round(1.0 / physics.timestep_scale)) if physics.timestep_scale else 1)


def control_substeps(frame_skip: int, jitter: float, rng: np.random.Generator) -> int:
    """A control step's physics steps: ``frame_skip``, or with ``jitter`` > 0 the period x (1 + u),
    u uniform in [-jitter, jitter], rounded to whole steps (at least one)."""
    if jitter <= 0.0:
        return frame_skip
    return max(1, int(round(frame_skip * (1.0 + rng.uniform(-jitter, jitter)))))
