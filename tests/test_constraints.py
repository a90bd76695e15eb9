"""Constraints: a penalty weight adapted as a Lagrange multiplier, λ ← clip(λ + lr (c̄ − d), λ₀, λ_max),
logged, checkpointed and resumed; bad constraint configs fail with one line naming the key."""

import collections
import csv

import numpy as np
import pytest

from robolearn.checkpoint import load_checkpoint
from robolearn.constraints import ConstraintMultipliers
from robolearn.envs import make_env
from robolearn.trainer import Trainer
from test_trainer import NAV, SMALL, robolearn, small_config

# Nav: the collision term (weight -0.05) charges bumper contacts; the collisions metric counts them
COLLISIONS = "constraints={collisions: {term: collision, limit: 0.5, lr: 0.1, max_weight: 1.0}}"


def multipliers(*extra):
    config = small_config(*extra)
    env = make_env(config.env.model_copy(update={"num_envs": 2}), seed=0)
    return ConstraintMultipliers(config, env.reward_weights, tuple(env.episode_metrics)), env


class Window:
    """The trainer's log window of one metric: the last 200 finished episodes."""

    def __init__(self):
        self.values = collections.deque(maxlen=200)

    def update(self, m, values):
        self.values.extend(values)
        m.update({"collisions": self.values})


def test_the_weight_moves_by_lr_times_the_excess_between_its_floor_and_cap():
    m, env = multipliers(COLLISIONS)
    weights = env.reward_weights
    window = Window()
    window.update(m, [2.0] * 60)  # under MIN_EPISODES: no step yet
    assert weights.weights["collision"] == -0.05 and m.metrics() == {"constraint/collisions": -0.05}
    window.update(m, [2.0] * 60)  # mean 2.0 over 120: λ = 0.05 + 0.1 * (2.0 − 0.5)
    assert weights.weights["collision"] == pytest.approx(-0.2, abs=1e-12)
    window.update(m, [0.5] * 80)  # mean (120 * 2 + 80 * 0.5) / 200 = 1.4: + 0.1 * 0.9
    assert weights.weights["collision"] == pytest.approx(-0.29, abs=1e-12)
    window.update(m, [0.0] * 200)  # met by 0.5: relaxes by 0.1 * 0.5 per iteration ...
    assert weights.weights["collision"] == pytest.approx(-0.24, abs=1e-12)
    for _ in range(5):
        window.update(m, [0.0] * 200)  # ... never below the configured 0.05
    assert weights.weights["collision"] == pytest.approx(-0.05, abs=1e-12)
    for _ in range(20):
        window.update(m, [9.0] * 200)
    assert weights.weights["collision"] == -1.0  # capped at max_weight
    # the env's reward uses it: the weighted terms carry the adapted weight
    terms = {name: np.ones(2) for name in weights.names}
    assert list(weights.weigh(terms)[weights.names.index("collision")]) == [-1.0, -1.0]
    assert weights.weights["progress"] == 1.0  # other terms untouched


def test_a_constraint_adapts_only_once_training_success_reaches_start_success():
    late = ("constraints={collisions: {term: collision, limit: 0.5, lr: 0.1, max_weight: 1.0}, "
            "late_collisions: {metric: collisions, term: slack, limit: 0.5, lr: 0.1, max_weight: 1.0, "
            "start_success: 0.6}}")
    m, env = multipliers(late)
    weights = env.reward_weights
    assert weights.weights["slack"] == -0.01  # the configured weight until started
    collisions, success = collections.deque(maxlen=200), collections.deque(maxlen=200)

    def update(n, c, s):
        collisions.extend([c] * n)
        success.extend([s] * n)
        m.update({"collisions": collisions, "success": success})

    update(150, 2.0, 0.0)  # collisions 2.0 > 0.5, but success 0 < 0.6: the first adapts, the second waits
    assert weights.weights["collision"] == pytest.approx(-0.2, abs=1e-12) and weights.weights["slack"] == -0.01
    update(60, 2.0, 1.0)  # success 60 / 200 = 0.3: still waiting
    assert weights.weights["slack"] == -0.01 and m.metrics()["constraint/late_collisions"] == -0.01
    update(100, 2.0, 1.0)  # success 160 / 200 = 0.8: started, λ = 0.01 + 0.1 * (2.0 − 0.5)
    assert weights.weights["slack"] == pytest.approx(-0.16, abs=1e-12)
    assert m.metrics()["constraint/late_collisions"] == pytest.approx(-0.16, abs=1e-12)
    update(200, 2.0, 0.0)  # once started it stays on when success falls again
    assert weights.weights["slack"] == pytest.approx(-0.31, abs=1e-12)
    state = m.state_dict()
    resumed, env2 = multipliers(late)
    resumed.load_state_dict(state)
    assert env2.reward_weights.weights["slack"] == pytest.approx(-0.31, abs=1e-12) and resumed.started == m.started
    waiting, env3 = multipliers(late)  # a run saved before its start goes on waiting
    waiting.load_state_dict({"lam": {"collisions": 0.2, "late_collisions": 0.01},
                             "started": {"collisions": True, "late_collisions": False}})
    waiting.update({"collisions": [2.0] * 200, "success": [0.0] * 200})
    assert env3.reward_weights.weights["slack"] == -0.01
    waiting.update({"collisions": [2.0] * 200, "success": [1.0] * 200})
    assert env3.reward_weights.weights["slack"] == pytest.approx(-0.16, abs=1e-12)


def test_constraints_are_logged_checkpointed_and_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr("robolearn.constraints.MIN_EPISODES", 1)
    # every episode is longer than 0 steps: the slack penalty (-0.01 per step) grows every iteration
    extra = ("constraints={length: {term: slack, limit: 0.0, lr: 1.0e-4, max_weight: 1.0}}", "env.episode_seconds=1.0")
    a = Trainer(small_config(*extra, "trainer.max_iterations=6"), tmp_path / "run")
    a.learn()
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        logged = [float(r["constraint/length"]) for r in csv.DictReader(handle)]
    weight = a.env.reward_weights.weights["slack"]
    assert logged[-1] == pytest.approx(weight) and weight < logged[0] <= -0.01
    assert all(b < a for a, b in zip(logged, logged[1:]) if a > -1.0)
    saved = load_checkpoint(tmp_path / "run")["constraints"]
    assert saved["lam"] == {"length": -weight}
    b = Trainer.from_checkpoint(tmp_path / "run", config=small_config(*extra, "trainer.max_iterations=7"))
    assert b.env.reward_weights.weights["slack"] == weight
    assert list(b.episodes["length"]) == list(a.episodes["length"])  # the window it adapts from


def test_the_trainer_switches_the_entropy_stage_on_training_success_and_a_resume_keeps_it(tmp_path):
    stage = "algorithm.entropy_stage={success: 0.6, entropy_coef: 0.0}"
    a = Trainer(small_config(stage, "algorithm.entropy_coef=0.01", "trainer.max_iterations=1"), tmp_path / "run")
    a.learn()
    a.episodes["success"].extend([0.0] * 60 + [1.0] * 40)  # 40% over the window of 100: not yet
    a._advance_stages()
    assert a.algorithm.entropy_coef == 0.01
    a.episodes["success"].extend([1.0] * 30)  # the window's last 100: 70%
    a._advance_stages()
    assert a.algorithm.entropy_coef == 0.0
    a.save()
    b = Trainer.from_checkpoint(tmp_path / "run", config=small_config(stage, "algorithm.entropy_coef=0.01",
                                                                      "trainer.max_iterations=2"))
    assert b.algorithm.entropy_coef == 0.0


@pytest.mark.parametrize("constraint, message", [
    ("{spl_x: {term: collision, limit: 0.5, lr: 0.1, max_weight: 1.0}}",
     "constraints.spl_x: robolearn/Nav-v0 has no episode metric 'spl_x'"),
    ("{collisions: {term: bumper, limit: 0.5, lr: 0.1, max_weight: 1.0}}",
     "constraints.collisions.term: robolearn/Nav-v0 has no reward term 'bumper'"),
    ("{collisions: {term: progress, limit: 0.5, lr: 0.1, max_weight: 1.0}}",
     "constraints.collisions.term: env.rewards.progress is 1, a reward"),
    ("{collisions: {term: collision, limit: 0.5, lr: 0.1, max_weight: 0.01}}",
     "constraints.collisions.max_weight 0.01 is below the configured penalty"),
    ("{collisions: {term: collision, limit: -1, lr: 0.1, max_weight: 1.0}}", "constraints.collisions.limit"),
    ("{late: {metric: spl_x, term: collision, limit: 0.5, lr: 0.1, max_weight: 1.0}}",
     "constraints.late.metric: robolearn/Nav-v0 has no episode metric 'spl_x'"),
    ("{collisions: {term: collision, limit: 0.5, lr: 0.1, max_weight: 1.0, start_success: 1.5}}",
     "constraints.collisions.start_success"),
])
def test_a_bad_constraint_is_one_line_naming_the_key(tmp_path, constraint, message):
    override = f"constraints={constraint}"
    out = robolearn("train", str(NAV), *SMALL, override, "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert message in out.stderr and f"override {override!r}" in out.stderr
    assert not (tmp_path / "r").exists()  # nothing was claimed
