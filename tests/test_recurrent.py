"""Recurrent actor-critic, sequence training, asymmetric critic, A2C, and robolearn/NavPO-v0."""

import numpy as np
import pytest
import torch

from policies import algorithm_kwargs, make_policy
from robolearn.algorithms import A2C, PPO, OnPolicyAlgorithm
from robolearn.config import ConfigError, load_config, validate_config
from robolearn.models import RecurrentActorCritic, Trajectories
from robolearn.rollout import EnvStep, collect_rollout
from robolearn.storage import RolloutStorage

BUDGET = {"trainer": {"max_iterations": 1}}

OBS_DIMS = {"policy": 5, "critic": 7}
ACTION_DIM = 2


def make_model(cell="lstm", critic_obs="critic", seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"rnn_hidden": 16, "rnn_layers": 2, "encoder_hidden": [8], "actor_hidden": [16],
              "critic_hidden": [16], **kwargs}
    return make_policy(OBS_DIMS, ACTION_DIM, cell, critic_obs=critic_obs, **kwargs)


def random_rollout(model, num_steps=12, num_envs=6, done_prob=0.2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    obs = {group: torch.randn(num_steps, num_envs, dim, generator=generator) for group, dim in OBS_DIMS.items()}
    dones = (torch.rand(num_steps, num_envs, generator=generator) < done_prob).float()
    dones[3, 0] = 1.0  # at least one episode end mid-rollout
    state = torch.randn(*model.state_shape[:2], num_envs, model.state_shape[2], generator=generator)
    actions = torch.randn(num_steps, num_envs, ACTION_DIM, generator=generator)
    return obs, actions, dones, state


def step_by_step(model, obs, dones, state):
    """What collection computes: one step at a time, state zeroed after each episode end."""
    means, values = [], []
    for t in range(dones.shape[0]):
        _, _, value, mean, _, state = model.act({g: x[t] for g, x in obs.items()}, state)
        means.append(mean)
        values.append(value)
        state = model.reset_state(state, dones[t])
    return torch.stack(means), torch.stack(values)


# --- sequences ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_whole_sequence_equals_stepping_with_resets(cell):
    model = make_model(cell)
    obs, actions, dones, state = random_rollout(model)
    with torch.no_grad():
        means, values = step_by_step(model, obs, dones, state)
        _, _, seq_values, seq_means, _ = model.evaluate_actions(obs, actions, state, dones)
    torch.testing.assert_close(seq_means, means, atol=1e-6, rtol=0)
    torch.testing.assert_close(seq_values, values, atol=1e-6, rtol=0)


def test_trajectories_pad_and_unpad():
    dones = torch.tensor([[0, 1], [1, 0], [0, 0], [0, 1]], dtype=torch.float32)  # [T=4, N=2]
    trajectories = Trajectories(dones)
    # env 0: steps 0-1 | 2-3; env 1: step 0 | 1-3
    assert (trajectories.num_segments, trajectories.max_length) == (4, 3)
    x = torch.arange(8.0).view(4, 2)
    padded = trajectories.pad(x)
    assert padded.T.tolist() == [[0, 2, 0], [4, 6, 0], [1, 0, 0], [3, 5, 7]]
    torch.testing.assert_close(trajectories.unpad(padded), x)
    state = torch.tensor([[[10.0], [20.0]]])  # [1, N, 1]
    assert trajectories.initial_state(state).flatten().tolist() == [10, 0, 20, 0]


def test_padding_never_leaks_into_the_loss(monkeypatch):
    model = make_model()
    obs, actions, dones, state = random_rollout(model)

    def loss_and_grads():
        model.zero_grad()
        log_prob, entropy, values, _, _ = model.evaluate_actions(obs, actions, state, dones)
        loss = -(log_prob.sum() + values.square().sum())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    reference_loss, reference_grads = loss_and_grads()
    original_pad = Trajectories.pad

    def pad_with_garbage(self, x):
        padded = original_pad(self, x)
        valid = torch.zeros(padded.shape[:2], dtype=torch.bool)
        valid[self.position, self.segment] = True
        assert (~valid).any(), "the rollout should need padding"
        return torch.where(valid.view(*valid.shape, *[1] * (padded.dim() - 2)), padded, torch.full_like(padded, 1e3))

    monkeypatch.setattr(Trajectories, "pad", pad_with_garbage)
    loss, grads = loss_and_grads()
    torch.testing.assert_close(loss, reference_loss, atol=0, rtol=0)
    for grad, reference in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference, atol=0, rtol=0)


def test_hidden_state_resets_at_episode_ends():
    model = make_model()
    obs, actions, dones, state = random_rollout(model, done_prob=0.0)  # one episode end: env 0 at t=3
    with torch.no_grad():
        _, _, values, mean, _ = model.evaluate_actions(obs, actions, state, dones)
        changed = {g: x.clone() for g, x in obs.items()}
        for x in changed.values():
            x[:4, 0] += 5.0  # env 0's first episode only
        _, _, values2, mean2, _ = model.evaluate_actions(changed, actions, state, dones)
        _, _, values3, mean3, _ = model.evaluate_actions(obs, actions, torch.randn_like(state), dones)
    assert not torch.allclose(mean2[:4, 0], mean[:4, 0])
    torch.testing.assert_close(mean2[4:, 0], mean[4:, 0], atol=0, rtol=0)  # nothing crosses the end
    torch.testing.assert_close(values2[4:, 0], values[4:, 0], atol=0, rtol=0)
    torch.testing.assert_close(mean3[4:, 0], mean[4:, 0], atol=0, rtol=0)  # nor the rollout's start state
    torch.testing.assert_close(mean2[:, 1:], mean[:, 1:], atol=0, rtol=0)  # other envs untouched
    finished = model.reset_state(state, torch.tensor([1.0, 0, 0, 0, 0, 1.0]))
    assert (finished[:, :, [0, 5]] == 0).all() and torch.equal(finished[:, :, 1:5], state[:, :, 1:5])


# --- asymmetric actor-critic --------------------------------------------------------------------

def test_asymmetric_critic_reads_the_critic_group_and_the_actor_does_not():
    model = make_model(critic_obs="critic")
    obs, actions, dones, state = random_rollout(model)
    with torch.no_grad():
        _, _, values, mean, _ = model.evaluate_actions(obs, actions, state, dones)
        _, _, values_c, mean_c, _ = model.evaluate_actions({**obs, "critic": obs["critic"] + 1.0}, actions, state, dones)
        _, _, values_p, mean_p, _ = model.evaluate_actions({**obs, "policy": obs["policy"] + 1.0}, actions, state, dones)
    torch.testing.assert_close(mean_c, mean, atol=0, rtol=0)
    assert not torch.allclose(values_c, values)
    assert not torch.allclose(mean_p, mean)
    torch.testing.assert_close(values_p, values, atol=0, rtol=0)

    # the exported path, actor_step, uses the actor's parameters only
    h = torch.zeros(2, 3, 16)
    mean, h_out, c_out = model.actor_step(torch.randn(3, OBS_DIMS["policy"]), h, torch.zeros_like(h))
    assert mean.shape == (3, ACTION_DIM) and h_out.shape == c_out.shape == (2, 3, 16)
    (mean.sum() + h_out.sum() + c_out.sum()).backward()
    critic_params = [*model.critic.parameters(), *model.critic_memory.parameters()]
    assert all(p.grad is None for p in critic_params)
    assert model.obs_normalizers["critic"].mean.shape == (OBS_DIMS["critic"],)


def test_actor_step_matches_act():
    model = make_model("gru", critic_obs="policy")
    obs, _, _, state = random_rollout(model)
    with torch.no_grad():
        _, _, _, mean, _, new_state = model.act({g: x[0] for g, x in obs.items()}, state)
        inference_mean, inference_state = model.act_inference({g: x[0] for g, x in obs.items()}, state)
        step_mean, h = model.actor_step(obs["policy"][0], state[0])
    torch.testing.assert_close(step_mean, mean, atol=0, rtol=0)
    torch.testing.assert_close(h, new_state[0], atol=0, rtol=0)
    torch.testing.assert_close(inference_mean, mean, atol=0, rtol=0)  # the deployed path, actor memory only
    torch.testing.assert_close(inference_state[0], new_state[0], atol=0, rtol=0)
    torch.testing.assert_close(inference_state[1], state[1], atol=0, rtol=0)  # the critic's memory is left as it was


# --- A2C and PPO share their math -----------------------------------------------------------------

def test_a2c_and_ppo_share_one_update_and_one_gae(monkeypatch):
    import robolearn.algorithms.on_policy

    assert A2C.update is PPO.update is OnPolicyAlgorithm.update
    calls = []
    original = robolearn.algorithms.on_policy.compute_gae

    def counting_gae(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(robolearn.algorithms.on_policy, "compute_gae", counting_gae)
    for algorithm_class, name in ((PPO, "ppo"), (A2C, "a2c")):
        env = CueEnv(num_envs=8)
        model = make_policy(env.obs_dims, 1, "lstm", rnn_hidden=8, critic_obs="critic")
        storage = RolloutStorage(6, 8, env.obs_dims, 1, model.initial_state(8).shape)
        algorithm = algorithm_class(model, **algorithm_kwargs(name))
        collect_rollout(model, env, storage, env.reset(), model.initial_state(8))
        stats = algorithm.update(storage)
        assert np.isfinite(list(stats.values())).all()
    assert len(calls) == 2


# --- learning -------------------------------------------------------------------------------------

class CueEnv:
    """A memory task in pure torch: step 0 of each episode shows a cue c = ±1, later steps show 0;
    the reward is −(a − c)² every step. Without memory the best return is about −1 per step after
    the cue. The critic group sees the cue throughout (privileged)."""

    obs_dims = {"policy": 2, "critic": 3}

    def __init__(self, num_envs: int, episode_length: int = 6, seed: int = 0) -> None:
        self.num_envs, self.episode_length = num_envs, episode_length
        self.generator = torch.Generator().manual_seed(seed)
        self.cue = torch.zeros(num_envs)
        self.t = torch.zeros(num_envs, dtype=torch.long)

    def _new_cues(self, mask: torch.Tensor) -> None:
        cues = torch.randint(0, 2, (self.num_envs,), generator=self.generator).float() * 2 - 1
        self.cue = torch.where(mask, cues, self.cue)
        self.t[mask] = 0

    def observe(self) -> dict[str, torch.Tensor]:
        first = (self.t == 0).float()
        policy = torch.stack([self.cue * first, first], dim=-1)
        return {"policy": policy, "critic": torch.cat([policy, self.cue[:, None]], dim=-1)}

    def reset(self) -> dict[str, torch.Tensor]:
        self._new_cues(torch.ones(self.num_envs, dtype=torch.bool))
        return self.observe()

    def step(self, actions: torch.Tensor) -> EnvStep:
        rewards = -(actions[:, 0].clamp(-1, 1) - self.cue).square()
        self.t += 1
        done = self.t >= self.episode_length
        self._new_cues(done)
        return EnvStep(self.observe(), rewards, done.float(), None, None, {})


@pytest.mark.parametrize("algorithm_class", [PPO, A2C])
def test_seeded_short_lstm_run_improves(algorithm_class):
    torch.manual_seed(0)
    num_envs, num_steps = 64, 12
    env = CueEnv(num_envs)
    model = make_policy(env.obs_dims, 1, "lstm", rnn_hidden=32, actor_hidden=[32], critic_hidden=[32], init_std=0.5,
                        critic_obs="critic")
    storage = RolloutStorage(num_steps, num_envs, env.obs_dims, 1, model.initial_state(num_envs).shape)
    kwargs = ({"name": "a2c", "lr": 3e-3} if algorithm_class is A2C
              else {"lr": 3e-3, "lr_schedule": "fixed", "num_minibatches": 2})
    algorithm = algorithm_class(model, **algorithm_kwargs(gamma=0.9, entropy_coef=0.0, **kwargs))
    obs, state = env.reset(), model.initial_state(num_envs)
    rewards = []
    for _ in range(60 if algorithm_class is PPO else 150):
        obs, state, _ = collect_rollout(model, env, storage, obs, state)
        rewards.append(storage.rewards.mean().item())
        algorithm.update(storage)
    first, last = np.mean(rewards[:3]), np.mean(rewards[-3:])
    # a memoryless policy can do no better than about −(5/6) per step on average here
    assert last > first + 0.5 and last > -0.6, (first, last)


# --- config and trainer --------------------------------------------------------------------------

def test_bad_policy_class_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("policy: {class: mamba}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: policy.class: unknown policy class 'mamba' "
                                          r"\(registered: gru, lstm, mlp"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"policy.rnn_hidden: unknown key"):  # an mlp has no memory
        validate_config({"policy": {"rnn_hidden": 64}, **BUDGET})
    with pytest.raises(ConfigError, match=r"clip_ratio: a PPO setting, not used by a2c"):
        validate_config({"algorithm": {"name": "a2c", "clip_ratio": 0.1}, **BUDGET})
    config = validate_config({"policy": {"class": "gru", "rnn_layers": 2}, **BUDGET})
    assert config.to_dict()["policy"]["class"] == "gru"
    assert validate_config(config.to_dict()).policy == config.policy  # the resolved config reloads


@pytest.mark.parametrize(("policy_class", "algorithm"), [("lstm", "ppo"), ("gru", "a2c")])
def test_trainer_trains_a_recurrent_policy_on_navpo(tmp_path, policy_class, algorithm):
    from robolearn.trainer import Trainer

    overrides = [f"policy.class={policy_class}", "policy.rnn_hidden=16", "policy.actor_hidden=[16]",
                 "policy.critic_hidden=[16]", f"algorithm.name={algorithm}", "env.num_envs=8",
                 "env.episode_seconds=1.0", "trainer.num_steps=16", "trainer.max_iterations=3", "device=cpu"]
    if algorithm == "a2c":
        overrides += ["algorithm.num_epochs=5", "algorithm.num_minibatches=4", "algorithm.lr_schedule=adaptive",
                      "algorithm.desired_kl=0.01"]  # the defaults: allowed
    config = load_config("configs/nav_po_lstm.yaml", overrides)
    trainer = Trainer(config, tmp_path / "run")
    path = trainer.learn()
    assert trainer.iteration == 3
    assert trainer.policy_state.shape == (4 if policy_class == "lstm" else 2, 1, 8, 16)  # actor and critic h[, c]
    resumed = Trainer.from_checkpoint(path)
    assert isinstance(resumed.policy, RecurrentActorCritic) and resumed.policy.cell == policy_class
    torch.testing.assert_close(resumed.policy_state, trainer.policy_state, atol=0, rtol=0)  # carried on


# --- robolearn/NavPO-v0 ---------------------------------------------------------------------------

def test_navpo_hides_velocity_holds_lidar_and_delays_actions():
    from robolearn.envs.diffdrive import NavPOEnv

    env = NavPOEnv(num_envs=2, seed=0, nthread=1, lidar_period=3, action_latency=[2, 2])
    assert "velocity" not in env.obs_layout["policy"].widths
    assert {"velocity", "lidar_now", "action_latency"} <= set(env.obs_layout["critic"].widths)
    obs, _ = env.reset(seed=0)
    lidar = env.obs_layout["policy"].slices["lidar"]
    scans, commands = [obs["policy"][:, lidar]], []
    for t in range(7):
        action = np.full((2, 2), 0.1 * (t + 1), np.float32)
        obs, *_ = env.step(action)
        scans.append(obs["policy"][:, lidar])
        commands.append(env.ctrl.copy() / env.cfg.max_wheel_speed)
    fresh = [t for t in range(1, 8) if not np.array_equal(scans[t], scans[t - 1])]
    assert fresh == [3, 6]  # the robot moves, but the policy sees a new scan every 3rd step only
    np.testing.assert_allclose(commands[0], 0.0)  # latency 2: the wheels get the action of 2 steps ago
    np.testing.assert_allclose(commands[4], 0.3, rtol=1e-6)


def test_navpo_goal_reading_only_every_kth_step_and_no_action_feedback():
    from robolearn.envs.diffdrive import NavPOEnv

    env = NavPOEnv(num_envs=2, seed=0, nthread=1, goal_period=4, observe_last_action=False)
    assert "last_action" not in env.obs_layout["policy"].widths
    assert {"goal_now", "last_action"} <= set(env.obs_layout["critic"].widths)
    obs, _ = env.reset(seed=0)
    goal = env.obs_layout["policy"].slices["goal"]
    goal_now = env.obs_layout["critic"].slices["goal_now"]
    for t in range(1, 10):
        obs, *_ = env.step(np.full((2, 2), 0.5, np.float32))
        reading, truth = obs["policy"][:, goal], obs["critic"][:, goal_now]
        assert np.all(np.linalg.norm(truth[:, 1:], axis=1) > 0.99)  # a real bearing is a unit vector
        if t % 4 == 0:
            np.testing.assert_array_equal(reading, truth)
        else:
            np.testing.assert_array_equal(reading, 0.0)  # dropped: zeros, never a real reading
