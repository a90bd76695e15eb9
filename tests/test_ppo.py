"""PPO: surrogate clipping, learning-rate rule, Gaussian fast path, storage, and a short learning run."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from policies import algorithm_kwargs, make_policy
from robolearn.algorithms.ppo import PPO, adapt_learning_rate_, clipped_surrogate_loss
from robolearn.models import gaussian_kl
from robolearn.storage import RolloutStorage

OBS_DIMS = {"policy": 4, "critic": 6}
ACTION_DIM = 2


class Bandit:
    """One-step task in pure torch: reward −‖a − W s‖², every step terminates the episode."""

    def __init__(self, seed=0):
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = torch.randn(ACTION_DIM, OBS_DIMS["policy"], generator=self.generator) * 0.5

    def observe(self, num_envs):
        policy = torch.randn(num_envs, OBS_DIMS["policy"], generator=self.generator)
        critic = torch.cat([policy, torch.zeros(num_envs, OBS_DIMS["critic"] - OBS_DIMS["policy"])], dim=1)
        return {"policy": policy, "critic": critic}

    def reward(self, obs, actions):
        return -(actions - obs["policy"] @ self.weights.T).square().sum(-1)


def collect(model, storage, bandit):
    with torch.inference_mode():
        for _ in range(storage.num_steps):
            obs = bandit.observe(storage.num_envs)
            actions, log_prob, values, mean, std, _ = model.act(obs, model.initial_state(storage.num_envs))
            rewards = bandit.reward(obs, actions)
            dones = torch.ones(storage.num_envs, dtype=torch.bool)  # terminated: next value 0
            storage.add(obs, actions, log_prob, values, mean, std, rewards, dones, torch.zeros_like(rewards))


def make(seed=0, num_steps=8, num_envs=64, **ppo_kwargs):
    torch.manual_seed(seed)
    model = make_policy(OBS_DIMS, ACTION_DIM, actor_hidden=[32, 32], critic_hidden=[32, 32], init_std=0.5,
                        critic_obs="critic")
    storage = RolloutStorage(num_steps, num_envs, OBS_DIMS, ACTION_DIM, model.initial_state(num_envs).shape)
    return model, storage, PPO(model, **algorithm_kwargs(**ppo_kwargs)), Bandit(seed)


# --- clipped surrogate ------------------------------------------------------------------------

@pytest.mark.parametrize(("ratio", "advantage", "gradient_flows"), [
    (1.3, 1.0, False),   # above 1 + ε with Â > 0: clipped, no incentive to push further
    (0.7, -1.0, False),  # below 1 − ε with Â < 0: clipped
    (1.1, 1.0, True),    # inside the trust region
    (0.9, -1.0, True),
    (1.3, -1.0, True),   # moved the wrong way: the unclipped term stays in the min
    (0.7, 1.0, True),
])
def test_surrogate_gradient_vanishes_only_where_clipped(ratio, advantage, gradient_flows):
    old_log_prob = torch.tensor([0.3])
    log_prob = (old_log_prob + math.log(ratio)).requires_grad_()
    loss, clip_fraction = clipped_surrogate_loss(log_prob, old_log_prob, torch.tensor([advantage]), 0.2)
    loss.backward()
    assert (log_prob.grad.abs().item() > 0) == gradient_flows
    assert clip_fraction.item() == (0.0 if abs(ratio - 1) < 0.2 else 1.0)


# --- KL-adaptive learning rate ----------------------------------------------------------------

@pytest.mark.parametrize(("lr", "kl", "expected"), [
    (1e-3, 0.1, 1e-3 / 1.5),   # KL above 2x the target: lower
    (1e-3, 1e-4, 1.5e-3),      # below half: raise
    (1e-3, 0.01, 1e-3),        # near the target: keep
    (1e-3, 0.02, 1e-3),        # exactly 2x: keep (strict comparison)
    (1e-5, 1.0, 1e-5),         # clamped below
    (1e-2, 0.0, 1e-2),         # clamped above
])
def test_adaptive_lr_rule_moves_the_right_way_and_is_clamped(lr, kl, expected):
    tensor = torch.tensor(lr, dtype=torch.float64)
    adapt_learning_rate_(tensor, torch.tensor(kl, dtype=torch.float32), desired_kl=0.01)
    assert tensor.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("schedule", "lr", "desired_kl", "moves"), [
    ("adaptive", 1e-2, 1e-9, "down"),  # any step is too big
    ("adaptive", 1e-5, 1e3, "up"),     # any step is too small
    ("fixed", 1e-2, 1e-9, "stays"),
])
def test_update_adapts_lr_only_when_adaptive(schedule, lr, desired_kl, moves):
    model, storage, ppo, bandit = make(lr=lr, lr_schedule=schedule, desired_kl=desired_kl)
    collect(model, storage, bandit)
    stats = ppo.update(storage)
    assert stats["lr"] == ppo.lr == ppo.optimizer.param_groups[0]["lr"]
    assert {"down": ppo.lr < lr, "up": ppo.lr > lr, "stays": ppo.lr == lr}[moves]


# --- Gaussian fast path -----------------------------------------------------------------------

def test_closed_form_gaussian_matches_torch_distributions():
    model, _, _, bandit = make()
    with torch.no_grad():
        model.log_std.copy_(torch.tensor([-0.3, 0.4]))
    obs = bandit.observe(16)
    actions, log_prob, values, mean, std, _ = model.act(obs, model.initial_state(16))
    reference = Normal(mean, std)
    torch.testing.assert_close(log_prob, reference.log_prob(actions).sum(-1))
    new_log_prob, entropy, new_values, new_mean, new_std = model.evaluate_actions(obs, actions, None, None)
    torch.testing.assert_close(new_log_prob, log_prob)
    torch.testing.assert_close(entropy, reference.entropy().sum(-1))
    torch.testing.assert_close(new_values, values)
    other = Normal(mean + 0.3, std * 1.7)
    torch.testing.assert_close(gaussian_kl(mean, std, other.mean, other.stddev),
                               kl_divergence(reference, other).sum(-1))


# --- storage ----------------------------------------------------------------------------------

def test_minibatches_visit_every_sample_once_per_epoch():
    storage = RolloutStorage(3, 5, {"policy": 1}, 1, (5, 0))
    for t in range(3):
        ids = torch.arange(5.0) + 5 * t
        storage.add({"policy": ids[:, None]}, ids[:, None], ids, ids, ids[:, None], torch.ones(1),
                    ids, torch.zeros(5), ids)
    with pytest.raises(IndexError):
        storage.add({"policy": ids[:, None]}, ids[:, None], ids, ids, ids[:, None], torch.ones(1),
                    ids, torch.zeros(5), ids)
    batches = list(storage.minibatches(num_minibatches=4, num_epochs=2))
    assert len(batches) == 8
    for epoch in (batches[:4], batches[4:]):
        seen = torch.cat([batch.obs["policy"][:, 0] for batch in epoch])
        assert sorted(seen.tolist()) == list(range(15))
        for batch in epoch:  # fields stay aligned through the shuffle
            assert torch.equal(batch.actions[:, 0], batch.obs["policy"][:, 0])
            assert torch.equal(batch.log_probs, batch.values)


# --- PPO end to end ---------------------------------------------------------------------------

def train_bandit(reward_scale=1.0, **ppo_kwargs):
    """25 PPO updates on the bandit (rewards times ``reward_scale``): the mean test reward before and
    after, the last update's statistics and the algorithm."""
    model, storage, ppo, bandit = make(seed=0, lr=3e-3, **ppo_kwargs)
    test_obs = bandit.observe(2048)

    def mean_reward():
        with torch.no_grad():
            return bandit.reward(test_obs, model.act_inference(test_obs, model.initial_state(2048))[0]).mean().item()

    initial = mean_reward()
    for _ in range(25):
        collect(model, storage, bandit)
        storage.rewards.mul_(reward_scale)
        stats = ppo.update(storage)
    return initial, mean_reward(), stats, ppo


def test_ppo_learns_a_contextual_bandit():
    initial, final, stats, _ = train_bandit()
    assert initial < -0.5
    assert final > 0.1 * initial, (initial, final)  # the squared error shrank at least 10-fold
    assert set(stats) == {"policy_loss", "value_loss", "entropy", "kl", "lr", "clip_fraction"}


def test_state_dict_restores_optimizer_and_lr():
    model, storage, ppo, bandit = make(lr=1e-3)
    collect(model, storage, bandit)
    ppo.update(storage)
    _, _, restored, _ = make(lr=5e-4)
    restored.load_state_dict(ppo.state_dict())
    assert restored.lr == ppo.lr == restored.optimizer.param_groups[0]["lr"]
    assert restored.optimizer.state_dict()["state"].keys() == ppo.optimizer.state_dict()["state"].keys()


def test_entropy_stage_switches_the_coefficient_once_success_reaches_it_and_survives_a_checkpoint():
    stage = {"success": 0.6, "entropy_coef": 0.0}
    model, storage, ppo, bandit = make(entropy_coef=1.0, entropy_stage=stage, lr_schedule="fixed")
    assert not ppo.advance_stage(0.59) and ppo.entropy_coef == 1.0
    log_std = model.log_std.detach().clone()
    collect(model, storage, bandit)
    ppo.update(storage)
    rose_with_bonus = (model.log_std.detach() - log_std).mean()
    assert rose_with_bonus > 0.01  # c2 = 1 dominates the loss: the std grows

    model, storage, ppo, bandit = make(entropy_coef=1.0, entropy_stage=stage, lr_schedule="fixed")
    assert ppo.advance_stage(0.6) and ppo.entropy_coef == 0.0
    assert not ppo.advance_stage(0.0) and ppo.entropy_coef == 0.0  # once switched it stays
    collect(model, storage, bandit)
    ppo.update(storage)
    assert (model.log_std.detach() - log_std).mean() < rose_with_bonus - 0.01  # no bonus: the std does not grow so
    _, _, resumed, _ = make(entropy_coef=1.0, entropy_stage=stage)
    resumed.load_state_dict(ppo.state_dict())
    assert resumed.entropy_coef == 0.0


def test_entropy_stage_max_std_caps_the_std_from_the_switch_on_even_against_a_bonus():
    stage = {"success": 0.6, "entropy_coef": 1.0, "max_std": 0.4}  # the bonus alone grows the std (above)
    model, storage, ppo, bandit = make(entropy_coef=1.0, entropy_stage=stage, lr_schedule="fixed")
    collect(model, storage, bandit)
    ppo.update(storage)
    assert model.log_std.exp().min() > 0.5  # before the stage: no cap (it starts at 0.5)
    assert ppo.advance_stage(0.6)  # the coefficient is unchanged, the stage is still on once
    assert torch.allclose(model.log_std.exp(), torch.full_like(model.log_std, 0.4))  # capped at the switch
    for _ in range(3):
        collect(model, storage, bandit)
        ppo.update(storage)
        assert model.log_std.exp().max() <= 0.4 + 1e-6
    _, _, resumed, _ = make(entropy_coef=1.0, entropy_stage=stage)
    resumed.load_state_dict(ppo.state_dict())
    assert resumed.stage_reached and not resumed.advance_stage(1.0)


def test_non_finite_update_raises():
    model, storage, ppo, bandit = make()
    collect(model, storage, bandit)
    storage.rewards[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        ppo.update(storage)


# --- reward scaling (algorithm.normalize_rewards) ----------------------------------------------

def test_return_scale_divides_by_the_std_of_the_discounted_returns():
    from robolearn.algorithms.return_scale import ReturnScale

    gamma = 0.9
    scale = ReturnScale(gamma)
    first = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    # by hand: env 0 G = 1, 0.9 + 3 = 3.9 (ends), 0.5; env 1 G = 2, 1.8 - 1 = 0.8, 0.72 + 4 = 4.72
    g_first = torch.tensor([1.0, 3.9, 0.5, 2.0, 0.8, 4.72], dtype=torch.float64)
    scaled = scale.scale_(first.clone(), dones)
    std = g_first.var(correction=0).add(1e-8).sqrt()
    torch.testing.assert_close(scaled, first / std.float())
    # the next rollout continues each env's G (env 0 from 0.5, env 1 from 4.72) and merges the moments
    second = torch.tensor([[2.0, -3.0]])
    g_second = torch.tensor([0.45 + 2.0, 4.248 - 3.0], dtype=torch.float64)
    scaled = scale.scale_(second.clone(), torch.zeros(1, 2))
    std = torch.cat([g_first, g_second]).var(correction=0).add(1e-8).sqrt()
    torch.testing.assert_close(scaled, second / std.float())
    torch.testing.assert_close(scale.running_return, g_second.float())


def test_normalized_rewards_learn_whatever_the_reward_scale_and_survive_a_checkpoint():
    """Rewards x1000: the critic's targets stay a few units and PPO still learns the bandit."""
    initial, final, stats, ppo = train_bandit(1000.0, normalize_rewards=True)
    assert final > 0.1 * initial
    assert stats["value_loss"] < 10.0  # scaled: not the (1000 x reward)^2 of the raw returns
    assert ppo.return_scale.std > 100.0
    _, _, restored, _ = make(normalize_rewards=True)
    restored.load_state_dict(ppo.state_dict())
    torch.testing.assert_close(restored.return_scale.std, ppo.return_scale.std)
