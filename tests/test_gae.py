"""GAE against numbers worked out by hand, including a termination and a truncation."""

import torch

from robolearn.algorithms.gae import compute_gae, normalize_advantages

GAMMA, LAM = 0.9, 0.8  # γλ = 0.72


def test_gae_matches_hand_computed_reference():
    # env 0 terminates at t=1: next value 0. env 1 is truncated at t=2: bootstrapped with
    # V(final_obs) = 3.0, the value of the pre-reset observation (not of the reset state).
    # t=3 of both bootstraps the rollout's end with V(s_4).
    rewards = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 0.0], [1.5, -1.0], [2.0, 0.5]])
    dones = torch.tensor([[0, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    next_values = torch.tensor([[1.0, 0.0], [0.0, -1.0], [2.0, 3.0], [2.5, 1.0]])

    # env 0: δ = [1 + .9·1 − .5, 2 + 0 − 1, 3 + .9·2 − 1.5, 4 + .9·2.5 − 2]
    #         = [1.4, 1.0, 3.3, 4.25]
    #   Â3 = 4.25, Â2 = 3.3 + .72·4.25 = 6.36, Â1 = 1.0 (episode ended), Â0 = 1.4 + .72·1.0 = 2.12
    # env 1: δ = [0 + 0 − 1, 1 − .9 − 0, 0 + .9·3 + 1, 1 + .9 − .5]
    #         = [−1.0, 0.1, 3.7, 1.4]
    #   Â3 = 1.4, Â2 = 3.7 (episode ended), Â1 = 0.1 + .72·3.7 = 2.764, Â0 = −1 + .72·2.764 = 0.99008
    expected_advantages = [[2.12, 0.99008], [1.0, 2.764], [6.36, 3.7], [4.25, 1.4]]
    expected_returns = [[2.62, 1.99008], [2.0, 2.764], [7.86, 2.7], [6.25, 1.9]]

    advantages, returns = compute_gae(rewards, values, dones, next_values, GAMMA, LAM)

    assert torch.allclose(advantages, torch.tensor(expected_advantages), atol=1e-5)
    assert torch.allclose(returns, torch.tensor(expected_returns), atol=1e-5)


def test_gae_accepts_float_dones_and_keeps_dtype():
    rewards = torch.ones(3, 2, dtype=torch.float64)
    advantages, returns = compute_gae(rewards, torch.zeros_like(rewards), torch.zeros_like(rewards),
                                      torch.zeros_like(rewards), 1.0, 1.0)
    # no discounting, no values: Â_t = number of rewards from t to the end
    assert advantages[:, 0].tolist() == [3.0, 2.0, 1.0]
    assert advantages.dtype == returns.dtype == torch.float64


def test_normalize_advantages():
    advantages = torch.tensor([1.0, 2.0, 3.0, 10.0])
    normalized = normalize_advantages(advantages)
    assert normalized.mean().abs() < 1e-6
    assert normalized.std().sub(1.0).abs() < 1e-6
