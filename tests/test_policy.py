"""One policy interface: the MLP, LSTM and GRU policies, and a policy class registered here, are all
driven by the same collection, update, evaluation and checkpoint code, with no branch for any."""

from pathlib import Path

import pytest
import torch
from pydantic import Field
from torch import nn

from policies import algorithm_kwargs, make_policy
from robolearn.algorithms import PPO
from robolearn.config import PolicyConfig, load_config
from robolearn.models import ActionScores, Policy, PolicyStep, register_policy
from robolearn.models.actor_critic import (build_mlp, build_obs_normalizers, gaussian_log_prob_entropy,
                                           gaussian_sample, update_obs_normalizers)
from robolearn.rollout import EnvStep, collect_rollout
from robolearn.storage import RolloutStorage

ROOT = Path(__file__).resolve().parents[1]
OBS_DIMS = {"policy": 3, "critic": 4}


class PreviousObsConfig(PolicyConfig):
    """``class: previous_obs``: an MLP on the current and the previous observation."""

    previous_weight: float = Field(1.0, description="scale of the previous observation")


class PreviousObsActorCritic(Policy):
    """Remembers the previous (normalised) policy observation: state ``[N, Dp]``, zero at an
    episode's start. Written against the interface only, as a user's policy would be."""

    sequence_training = True

    def __init__(self, obs_dims, action_dim, *, obs_shapes, actor_hidden, critic_hidden, activation, init_std,
                 normalize_obs, critic_obs, encoder, previous_weight):
        super().__init__()
        if any(len(shape) > 1 for terms in (obs_shapes or {}).values() for shape in terms.values()):
            raise ValueError("policy.class previous_obs reads vector observations only")  # (encoder: unused)
        self.critic_obs, self.previous_weight, self.obs_dim = critic_obs, previous_weight, obs_dims["policy"]
        self.obs_normalizers = build_obs_normalizers(obs_dims, critic_obs, normalize_obs)
        self.actor = build_mlp(2 * obs_dims["policy"], actor_hidden, action_dim, activation, output_gain=0.01)
        self.critic = build_mlp(obs_dims[critic_obs], critic_hidden, 1, activation, output_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(torch.tensor(init_std).log())))

    def initial_state(self, num_envs):
        return self.log_std.new_zeros(num_envs, self.obs_dim)

    def _mean(self, current, previous):
        return self.actor(torch.cat([current, self.previous_weight * previous], dim=-1))

    def act(self, obs, state):
        current = self.obs_normalizers["policy"](obs["policy"])
        mean = self._mean(current, state)
        actions, log_prob = gaussian_sample(mean, self.log_std)
        return PolicyStep(actions, log_prob, self.value(obs, state), mean, self.log_std.exp().expand_as(mean), current)

    def act_inference(self, obs, state):
        current = self.obs_normalizers["policy"](obs["policy"])
        return self._mean(current, state), current

    def value(self, obs, state):
        return self.critic(self.obs_normalizers[self.critic_obs](obs[self.critic_obs])).squeeze(-1)

    def evaluate_actions(self, obs, actions, state, dones):
        current = self.obs_normalizers["policy"](obs["policy"])  # [T, n, D]
        previous = torch.cat([state.unsqueeze(0), current[:-1] * (1.0 - dones[:-1]).unsqueeze(-1)])
        mean = self._mean(current, previous)
        log_prob, entropy = gaussian_log_prob_entropy(actions, mean, self.log_std)
        return ActionScores(log_prob, entropy, self.value(obs, None), mean, self.log_std.exp().expand_as(mean))

    def update_normalizers(self, obs, reduce=None):
        update_obs_normalizers(self.obs_normalizers, obs, reduce)


register_policy("previous_obs", PreviousObsActorCritic, PreviousObsConfig)

POLICIES = {
    "mlp": {},
    "lstm": {"rnn_hidden": 8, "actor_hidden": [16], "critic_hidden": [16]},
    "gru": {"rnn_hidden": 8, "rnn_layers": 2, "actor_hidden": [16], "critic_hidden": [16]},
    "previous_obs": {"actor_hidden": [16], "critic_hidden": [16], "previous_weight": 0.5},
    "transformer": {"context": 4, "width": 8, "heads": 2, "ffn_hidden": 16, "actor_hidden": [16],
                    "critic_hidden": [16]},
}


class Chain:
    """A torch env: observations are noise, episodes end at random (about every 4th step)."""

    def __init__(self, num_envs: int, seed: int = 0):
        self.num_envs, self.generator = num_envs, torch.Generator().manual_seed(seed)

    def reset(self):
        return {g: torch.randn(self.num_envs, d, generator=self.generator) for g, d in OBS_DIMS.items()}

    def step(self, actions):
        dones = (torch.rand(self.num_envs, generator=self.generator) < 0.25).float()
        return EnvStep(self.reset(), -actions.square().sum(-1), dones, None, None, {})


@pytest.mark.parametrize("policy_class", sorted(POLICIES))
def test_every_policy_runs_the_same_collection_and_update(policy_class):
    torch.manual_seed(0)
    num_envs, num_steps = 6, 10
    policy = make_policy(OBS_DIMS, 2, policy_class, critic_obs="critic", **POLICIES[policy_class])
    env = Chain(num_envs)
    storage = RolloutStorage(num_steps, num_envs, OBS_DIMS, 2, policy.initial_state(num_envs).shape)
    start = policy.initial_state(num_envs) + 0.5  # a state carried in from an earlier rollout
    obs, state, _ = collect_rollout(policy, env, storage, env.reset(), start)

    # the state was stored at the rollout's start and reset where the last step ended an episode
    assert torch.equal(storage.initial_state, start)
    ended = storage.dones[-1].bool()
    assert ended.any() and (~ended).any()
    assert torch.equal(state[..., ended, :], policy.initial_state(num_envs)[..., ended, :])

    # scoring the stored actions reproduces what collection computed, step by step or as sequences
    with torch.no_grad():
        batch = next(storage.minibatches(1, 1, whole_envs=policy.sequence_training))
        scores = policy.evaluate_actions(batch.obs, batch.actions, batch.state, batch.dones)
    torch.testing.assert_close(scores.log_prob, batch.log_probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(scores.values, batch.values, atol=1e-5, rtol=0)

    algorithm = PPO(policy, **algorithm_kwargs(num_minibatches=2))
    before = [p.detach().clone() for p in policy.parameters()]
    stats = algorithm.update(storage)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_a_registered_policy_trains_evaluates_and_resumes_without_touching_a_caller(tmp_path):
    from robolearn.envs import make_env
    from robolearn.evaluation import run_episodes
    from robolearn.trainer import Trainer

    overrides = ["policy.class=previous_obs", "policy.actor_hidden=[16]", "policy.critic_hidden=[16]",
                 "policy.previous_weight=0.5", "env.num_envs=8", "trainer.num_steps=8", "trainer.max_iterations=2",
                 "device=cpu", "env.nthread=1", "env.episode_seconds=1.0"]
    config = load_config(ROOT / "configs" / "nav.yaml", overrides)
    assert config.policy.previous_weight == 0.5
    trainer = Trainer(config, tmp_path / "run")
    trainer.learn()
    assert isinstance(trainer.policy, PreviousObsActorCritic) and trainer.policy_state.shape == (8, 23)
    result = run_episodes(trainer.policy.eval(), make_env(config.env.model_copy(update={"num_envs": 2}), seed=5),
                          episodes=2)
    assert result["episodes"] == 2
    resumed = Trainer.from_checkpoint(tmp_path / "run", config=load_config(
        ROOT / "configs" / "nav.yaml", [*overrides[:-3], "trainer.max_iterations=3", *overrides[-2:]]))
    torch.testing.assert_close(resumed.policy_state, trainer.policy_state, atol=0, rtol=0)
    resumed.learn()
    assert resumed.iteration == 3
