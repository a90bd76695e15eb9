"""Randomization applied to Nav-v0: nominal identity, physics fields, latency, noise, config errors."""

from pathlib import Path

import numpy as np
import pytest

from robolearn.config import ConfigError, RandomizationConfig, load_config
from robolearn.envs.diffdrive import NavEnv
from robolearn.randomization import RandomizationError

ROOT = Path(__file__).resolve().parents[1]

NOMINAL = {
    "adr": {"enabled": False},
    "params": {
        "friction": {"target": "geom_friction", "select": {"geoms": ["wheel_l", "wheel_r"]}, "init_range": [1, 1]},
        "mass": {"target": "body_mass", "select": {"bodies": ["base", "wheel_l"]}, "init_range": [1, 1]},
        "damping": {"target": "joint_damping", "select": {"joints": ["wheel_l"]}, "init_range": [1, 1]},
        "armature": {"target": "armature", "select": {"joints": ["wheel_r"]}, "op": "add", "init_range": [0, 0]},
        "gain": {"target": "actuator_gain", "select": {"actuators": ["wheel_l", "wheel_r"]}, "init_range": [1, 1]},
        "strength": {"target": "actuator_strength", "select": {"actuators": ["wheel_l"]}, "init_range": [1, 1]},
        "gravity": {"target": "gravity", "init_range": [1, 1]},
        "stiffness": {"target": "contact_timeconst", "select": {"geoms": ["wheel_l"]}, "init_range": [1, 1]},
        "latency": {"target": "action_latency", "op": "set", "type": "int", "init_range": [0, 0], "limits": [0, 3]},
        "noise": {"target": "action_noise", "op": "set", "init_range": [0, 0]},
        "deadband": {"target": "action_deadband", "op": "set", "init_range": [0, 0]},
        "backlash": {"target": "action_backlash", "op": "set", "init_range": [0, 0]},
        "push": {"target": "push", "select": {"bodies": ["base"]}, "op": "set", "init_range": [0, 0]},
        "lidar_noise": {"target": "obs_noise", "select": {"obs_terms": ["lidar"]}, "op": "set", "init_range": [0, 0]},
        "lidar_bias": {"target": "obs_bias", "select": {"obs_terms": ["lidar", "goal"]}, "op": "set", "init_range": [0, 0]},
        "lidar_scale": {"target": "obs_scale", "select": {"obs_terms": ["velocity"]}, "init_range": [1, 1]},
        "size": {"target": "layout", "select": {"layout": "obstacle_size"}, "init_range": [1, 1]},
        "count": {"target": "layout", "select": {"layout": "obstacle_count"}, "op": "set", "type": "int",
                  "init_range": [8, 8]},
    },
}


def run(env, steps=120, seed=0):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    qpos, policy = [env.qpos.copy()], [obs["policy"]]
    for _ in range(steps):
        obs, *_ = env.step(rng.uniform(-1, 1, (env.num_envs, 2)))
        qpos.append(env.qpos.copy())
        policy.append(obs["policy"])
    return np.array(qpos), np.array(policy)


def test_nominal_ranges_reproduce_the_unrandomized_env_bit_for_bit():
    plain = NavEnv(num_envs=6, episode_seconds=2.0, seed=0)
    nominal = NavEnv(num_envs=6, episode_seconds=2.0, seed=0, randomization=NOMINAL)
    assert nominal.randomizer is not None and len(nominal.randomizer.names) == len(NOMINAL["params"])
    qa, pa = run(plain)
    qb, pb = run(nominal)
    np.testing.assert_array_equal(qa, qb)
    np.testing.assert_array_equal(pa, pb)


def test_mass_scale_two_doubles_mass_and_inertia():
    env = NavEnv(num_envs=3, seed=0, randomization={"params": {
        "mass": {"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [2, 2]}}})
    env.reset(seed=0)
    base = env.model.body("base").id
    np.testing.assert_allclose(env.batch.expanded("body_mass")[:, base], 2 * env.model.body_mass[base])
    np.testing.assert_allclose(env.batch.expanded("body_inertia")[:, base], np.tile(2 * env.model.body_inertia[base], (3, 1)))
    other = env.model.body("wheel_l").id
    assert np.all(env.batch.expanded("body_mass")[:, other] == env.model.body_mass[other])
    # applied relative to the nominal model: a second reset does not compound
    env.reset(seed=1)
    np.testing.assert_allclose(env.batch.expanded("body_mass")[:, base], 2 * env.model.body_mass[base])


def test_actuator_gain_scales_kv_in_gain_and_bias():
    env = NavEnv(num_envs=2, seed=0, randomization={"params": {
        "gain": {"target": "actuator_gain", "select": {"actuators": ["wheel_l"]}, "init_range": [1.5, 1.5]}}})
    env.reset(seed=0)
    a = env.model.actuator("wheel_l").id
    kv = env.model.actuator_gainprm[a, 0]
    np.testing.assert_allclose(env.batch.expanded("actuator_gainprm")[:, a, 0], 1.5 * kv)
    np.testing.assert_allclose(env.batch.expanded("actuator_biasprm")[:, a, 2], -1.5 * kv)  # velocity servo


@pytest.mark.parametrize("k", [1, 2, 3])
def test_latency_delays_actions_by_exactly_k_control_steps(k):
    env = NavEnv(num_envs=2, seed=0, randomization={"params": {
        "latency": {"target": "action_latency", "op": "set", "type": "int", "init_range": [k, k]}}})
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 2, 2)).astype(np.float32)
    ctrl = []
    for a in actions:
        env.step(a)
        ctrl.append(env.ctrl.copy())
    ctrl = np.array(ctrl) / env.cfg.max_wheel_speed
    np.testing.assert_array_equal(ctrl[:k], 0.0)
    np.testing.assert_allclose(ctrl[k:], actions[:-k], atol=1e-6)
    # the policy sees the action it commanded, not the delayed one
    lay = env.obs_layout["policy"].slices["last_action"]
    assert np.allclose(env._observe_groups()["policy"][:, lay], actions[-1])


def test_correlated_obs_noise_is_constant_within_an_episode_and_changes_across():
    env = NavEnv(num_envs=4, episode_seconds=0.5, seed=0, randomization={"params": {
        "bias": {"target": "obs_bias", "select": {"obs_terms": ["lidar"]}, "op": "set", "init_range": [0.1, 0.1]}}})
    lidar = env.obs_layout["policy"].slices["lidar"]
    obs, _ = env.reset(seed=0)
    biases = [obs["policy"][:, lidar] - obs["critic"][:, lidar]]  # critic holds the noise-free terms
    for _ in range(9):
        obs, *_ = env.step(np.zeros((4, 2)))
        biases.append(obs["policy"][:, lidar] - obs["critic"][:, lidar])
    assert np.allclose(np.array(biases), biases[0], atol=1e-6)
    assert 0.03 < np.std(biases[0]) < 0.3
    obs, *_ = env.step(np.zeros((4, 2)))  # the 10th step ends every episode (0.5 s)
    after = obs["policy"][:, lidar] - obs["critic"][:, lidar]
    assert not np.allclose(after, biases[0], atol=1e-3)


def test_white_obs_noise_changes_every_step_and_critic_sees_parameters():
    env = NavEnv(num_envs=2, seed=0, randomization={"params": {
        "noise": {"target": "obs_noise", "select": {"obs_terms": ["lidar"]}, "op": "set", "init_range": [0.0, 0.2]}}})
    obs, _ = env.reset(seed=0)
    lidar = env.obs_layout["policy"].slices["lidar"]
    d0 = obs["policy"][:, lidar] - obs["critic"][:, lidar]
    obs, *_ = env.step(np.zeros((2, 2)))
    d1 = obs["policy"][:, lidar] - obs["critic"][:, lidar]
    assert not np.allclose(d0, d1)
    values = obs["critic"][:, env.obs_layout["critic"].slices["randomization"]][:, 0]
    np.testing.assert_allclose(values, 2 * env.randomizer.values[:, 0] / 0.2 - 1, atol=1e-6)


@pytest.mark.parametrize("params, message", [
    ({"x": {"target": "geom_friction", "select": {"geoms": ["wheel_q"]}, "init_range": [1, 1]}},
     r"randomization\.params\.x\.select\.geoms: 'wheel_q' matches no geom"),
    ({"x": {"target": "body_mass", "select": {"bodies": ["chassis"]}, "init_range": [1, 1]}},
     r"^randomization\.params\.x\.select\.bodies: 'chassis' matches no body in the model$"),
    ({"x": {"target": "joint_damping", "select": {"joints": ["hip"]}, "init_range": [1, 1]}},
     r"^randomization\.params\.x\.select\.joints: 'hip' matches no joint in the model$"),
    ({"x": {"target": "actuator_gain", "select": {"actuators": ["motor"]}, "init_range": [1, 1]}},
     r"^randomization\.params\.x\.select\.actuators: 'motor' matches no actuator in the model$"),
    ({"x": {"target": "obs_noise", "select": {"obs_terms": ["sonar"]}, "op": "set", "init_range": [0, 1]}},
     r"randomization\.params\.x\.select\.obs_terms: 'sonar' is not a policy obs term"),
    ({"x": {"target": "layout", "select": {"layout": "walls"}, "init_range": [1, 1]}},
     r"randomization\.params\.x\.select\.layout: 'walls' is not a layout parameter"),
])
def test_names_that_match_nothing_are_config_errors(params, message):
    with pytest.raises(RandomizationError, match=message):
        NavEnv(num_envs=1, randomization={"params": params})
    assert issubclass(RandomizationError, ConfigError)


def test_contact_timeconst_under_two_timesteps_is_refused():
    """MuJoCo clamps a contact time constant under two physics timesteps: a range reaching there
    (the wheels' 0.05 s scaled by 0.3 at a 0.01 s step) would randomize nothing below it."""
    params = {"x": {"target": "contact_timeconst", "select": {"geoms": ["wheel_l"]}, "init_range": [0.5, 1],
                    "limits": [0.3, 1]}}
    with pytest.raises(RandomizationError, match=r"^randomization\.params\.x\.limits: a contact time constant of "
                                                 r"0\.015 s is under two physics timesteps \(0\.02 s\)"):
        NavEnv(num_envs=1, randomization={"params": params})
    params["x"]["limits"] = [0.4, 1]  # 0.02 s: the stiffest allowed
    NavEnv(num_envs=1, randomization={"params": params})


@pytest.mark.parametrize("param, message", [
    ({"target": "friction", "init_range": [1, 1]}, "unknown target 'friction'"),
    ({"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [0.5, 1.5], "limits": [0.8, 2]},
     r"limits \[0.8, 2.0\] do not contain init_range"),
    ({"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [0, 1]}, "scale ranges must be positive"),
    ({"target": "gravity", "select": {"bodies": ["base"]}, "init_range": [1, 1]}, "takes no selection"),
    ({"target": "action_latency", "op": "set", "init_range": [0, 1]}, "type: int"),
    ({"target": "contact_timeconst", "select": {"geoms": ["wheel_l"]}, "op": "set", "init_range": [-100, 0.02]},
     r"contact_timeconst is seconds \(> 0"),
    ({"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [1, 1], "limits": [0.5, 2],
      "stage": {"success": 0.5, "range": [1, 3]}}, r"stage.range \[1.0, 3.0\] is outside limits \[0.5, 2.0\]"),
    ({"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [1, 1], "limits": [0.5, 2], "delta": 0.1,
      "stage": {"success": 0.5, "range": [1, 2]}}, "stage: a staged parameter's ranges are fixed"),
    ({"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [1, 1],
      "stage": {"success": 1.5, "range": [1, 1]}}, "stage.success"),
])
def test_bad_parameters_name_the_key(tmp_path, param, message):
    path = tmp_path / "exp.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"trainer": {"max_iterations": 1}, "randomization": {"params": {"bad": param}}}))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert f"{path}: randomization.params.bad" in str(info.value)


def test_adr_needs_positive_delta():
    with pytest.raises(ValueError, match=r"params\.m\.delta: ADR needs a positive delta"):
        RandomizationConfig.model_validate({"adr": {"enabled": True}, "params": {
            "m": {"target": "body_mass", "select": {"bodies": ["base"]}, "init_range": [1, 1], "limits": [0.5, 2]}}})


def test_bundled_configs_build():
    cfg = load_config(ROOT / "configs" / "nav_adr.yaml", ["env.num_envs=4"])
    env = NavEnv(config=cfg.env, randomization=cfg.randomization, seed=0)
    assert env.randomizer.adr.update and env.obs_layout["critic"].widths["randomization"] == len(cfg.randomization.params)
    from robolearn.evaluation import eval_randomization

    field = eval_randomization(str(ROOT / "configs" / "eval" / "nav_field.yaml"), cfg, {})
    env = NavEnv(config=cfg.env, randomization=field, seed=0)
    assert not env.randomizer.adr.update
    env.reset(seed=0)
    latency = env.randomizer.values[:, field_index(field, "action_latency")]
    assert np.all((latency >= 4) & (latency <= 6) & (latency == np.round(latency)))


def field_index(config, name):
    return list(config.params).index(name)


def test_randomized_env_is_deterministic_under_a_seed():
    cfg = load_config(ROOT / "configs" / "nav_adr.yaml", ["env.num_envs=4", "env.episode_seconds=1.0"])
    a, b = (NavEnv(config=cfg.env, randomization=cfg.randomization, seed=s) for s in (0, 1))
    qa, pa = run(a, steps=60, seed=5)
    qb, pb = run(b, steps=60, seed=5)  # reset(seed=5) re-seeds every stream
    np.testing.assert_array_equal(qa, qb)
    np.testing.assert_array_equal(pa, pb)
    assert not np.allclose(pa[1:], run(a, steps=60, seed=6)[1][1:])


# ---------------------------------------------------------------------------------------------
# the randomizer's exchange across ranks and its state

ADR_FRICTION = {"adr": {"enabled": True, "queue_length": 2, "t_low": 0.2, "t_high": 0.8},
                "params": {"friction": {"target": "geom_friction", "select": {"geoms": ["wheel_l"]},
                                        "init_range": [1.0, 1.0], "limits": [0.5, 2.0], "delta": 0.25}}}
HIGH = [0.0, 1.0, 1.0]  # boundary tag: parameter 0, upper bound, evaluated at 1.0


class _Ranks:
    """Two ranks in two threads of one process: what torch.distributed's object collectives do."""

    def __init__(self):
        import threading

        self.barrier = threading.Barrier(2, timeout=30)
        self.slots = [None, None]


class FakeComm:
    enabled = True

    def __init__(self, ranks, rank):
        self.ranks, self.rank, self.is_main = ranks, rank, rank == 0

    def all_gather_object(self, obj):
        self.ranks.slots[self.rank] = obj
        self.ranks.barrier.wait()
        gathered = list(self.ranks.slots)
        self.ranks.barrier.wait()
        return gathered

    def broadcast_object(self, obj):
        return self.all_gather_object(obj)[0]


def synchronize_both(randomizers):
    import threading

    ranks, errors = _Ranks(), []

    def call(rank):
        try:
            randomizers[rank].synchronize(FakeComm(ranks, rank))
        except Exception as err:  # pragma: no cover (reported below)
            errors.append(err)
            ranks.barrier.abort()

    threads = [threading.Thread(target=call, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def finish_boundary_episodes(randomizer, successes):
    """Envs 0.. end boundary episodes at friction's upper bound with the given success values."""
    ids = np.arange(len(successes))
    randomizer.tags[ids] = HIGH
    success = np.zeros(randomizer.env.num_envs)
    success[ids] = successes
    randomizer.on_episode_end(ids, {"success": success})


def test_synchronize_records_every_rank_on_rank_0_and_gives_every_rank_its_ranges():
    envs = [NavEnv(num_envs=2, nthread=1, seed=rank, randomization=ADR_FRICTION) for rank in (0, 1)]
    rank0, rank1 = (env.randomizer for env in envs)
    rank1.adr.ranges[0] = [0.7, 1.3]  # rank 1 starts out of step with rank 0
    synchronize_both([rank0, rank1])  # at the start of training: deferral on, rank 0's ranges
    assert rank1.adr.ranges.tolist() == [[1.0, 1.0]]
    finish_boundary_episodes(rank0, [0.25])
    finish_boundary_episodes(rank1, [0.5])
    assert rank0.adr.queues == [[[], []]] and rank1.adr.queues == [[[], []]]  # waiting, not recorded
    rank0.adr.queue_length = 3  # look at the queue before it decides
    synchronize_both([rank0, rank1])
    assert rank0.adr.queues == [[[], [0.25, 0.5]]]  # rank order
    assert rank1.adr.queues == [[[], []]]  # only rank 0 keeps queues
    finish_boundary_episodes(rank1, [1.0, 1.0])
    synchronize_both([rank0, rank1])  # [0.25, 0.5, 1.0] fills the queue: mean 0.58, between the thresholds
    assert rank0.adr.queues == [[[], [1.0]]] and rank0.adr.moves == 0
    finish_boundary_episodes(rank1, [1.0, 1.0])
    synchronize_both([rank0, rank1])  # [1.0, 1.0, 1.0]: the upper bound moves outward by delta
    assert rank0.adr.ranges.tolist() == [[1.0, 1.25]] and rank0.adr.moves == 1
    assert rank1.adr.ranges.tolist() == [[1.0, 1.25]] and rank1.adr.moves == 1


class _SingleProcess:
    enabled, is_main = False, True

    def all_gather_object(self, obj):  # pragma: no cover (must not be called)
        raise AssertionError("a single process exchanges nothing")

    broadcast_object = all_gather_object


def test_single_process_records_at_episode_end_and_synchronize_does_nothing():
    env = NavEnv(num_envs=2, nthread=1, seed=0, randomization=ADR_FRICTION)
    randomizer = env.randomizer
    randomizer.synchronize(_SingleProcess())
    finish_boundary_episodes(randomizer, [1.0])
    assert randomizer.adr.queues == [[[], [1.0]]]  # recorded at once
    finish_boundary_episodes(randomizer, [1.0])
    assert randomizer.adr.ranges.tolist() == [[1.0, 1.25]] and randomizer.adr.queues == [[[], []]]


def test_randomizer_state_round_trips_every_part():
    env = NavEnv(num_envs=2, nthread=1, seed=0, randomization=ADR_FRICTION)
    env.reset(seed=0)
    randomizer = env.randomizer
    finish_boundary_episodes(randomizer, [1.0])
    randomizer.values[:] = 1.5
    state = randomizer.state_dict()
    other = NavEnv(num_envs=2, nthread=1, seed=7, randomization=ADR_FRICTION).randomizer
    other.load_state_dict(state)
    assert other.adr.queues == [[[], [1.0]]] and other.values.tolist() == [[1.5], [1.5]]
    assert other.rng.bit_generator.state == randomizer.rng.bit_generator.state
    assert other.adr.rng.bit_generator.state == randomizer.adr.rng.bit_generator.state
    np.testing.assert_array_equal(other.tags, randomizer.tags)
    wrong = NavEnv(num_envs=3, nthread=1, seed=0, randomization=ADR_FRICTION).randomizer
    with pytest.raises(ValueError, match=r"randomizer state 'values' has shape \(2, 1\), this env's is \(3, 1\)"):
        wrong.load_state_dict(state)


STAGED = {"adr": {"enabled": True, "queue_length": 2}, "params": {
    "count": {"target": "layout", "select": {"layout": "obstacle_count"}, "op": "set", "type": "int",
              "init_range": [0, 2], "limits": [0, 8], "stage": {"success": 0.6, "range": [6, 8]}}}}


def test_a_staged_range_replaces_the_initial_one_once_training_success_first_reaches_it():
    env = NavEnv(num_envs=8, nthread=1, seed=0, randomization=STAGED)
    env.reset(seed=0)
    randomizer = env.randomizer
    assert randomizer.values[:, 0].max() <= 2
    assert randomizer.advance_stages(0.59) == [] and randomizer.adr.ranges.tolist() == [[0, 2]]
    randomizer.adr.queues = [[[1.0], []]]
    assert randomizer.advance_stages(0.6) == ["count"]
    assert randomizer.adr.ranges.tolist() == [[6, 8]] and randomizer.adr.queues == [[[], []]]  # old bounds' results dropped
    env.reset(seed=1)
    assert randomizer.values[:, 0].min() >= 6 and env.layout_params["obstacle_count"].min() >= 6
    assert randomizer.advance_stages(0.0) == [] and randomizer.adr.ranges.tolist() == [[6, 8]]  # it stays
    randomizer.adr.record(np.array([[0, 0, 6.0], [0, 0, 6.0], [0, 1, 8.0], [0, 1, 8.0]]), np.zeros(4))
    assert randomizer.adr.ranges.tolist() == [[6, 8]]  # failing boundary episodes move no fixed range
    state = randomizer.state_dict()
    resumed = NavEnv(num_envs=8, nthread=1, seed=0, randomization=STAGED).randomizer
    resumed.load_state_dict(state)
    assert resumed.stage_reached.tolist() == [True] and resumed.adr.ranges.tolist() == [[6, 8]]
    assert resumed.advance_stages(1.0) == []
    del state["stage_reached"]  # a state saved before stages existed: none reached
    older = NavEnv(num_envs=8, nthread=1, seed=0, randomization=STAGED).randomizer
    older.load_state_dict(state)
    assert older.stage_reached.tolist() == [False]
