"""PPO learner throughput, robolearn vs rsl_rl 5.5.1, on a zero-cost synthetic env.

Both learners get the same setting: [256, 256, 256] ELU actor and critic with observation
normalisation, 24 steps x N envs per rollout, 5 epochs x 4 minibatches, Adam at lr 1e-3 with the
KL-adaptive schedule, per-minibatch advantage normalisation. The env serves precomputed random
observations and rewards, so what is timed is the learner: rollout collection (policy and value
inference, storage) plus the update. rsl_rl is driven by its own OnPolicyRunner; robolearn by
``robolearn.rollout.collect_rollout`` (the trainer's loop) and ``PPO.update``. Rounds alternate between the two to share any drift in machine load.

    python bench/learner_vs_rsl_rl.py --num-envs 256 1024 --iterations 20

Needs ``pip install rsl-rl-lib==5.5.1`` (with tensordict; no CUDA torch needed). Run it alone:
on 2 cores any other job voids the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import time

import torch
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict

from robolearn.algorithms import PPO
from robolearn.config import AlgorithmConfig, PolicyConfig
from robolearn.models import build_policy
from robolearn.rollout import EnvStep, collect_rollout
from robolearn.storage import RolloutStorage

OBS_DIMS = {"policy": 48, "critic": 60}
ACTION_DIM = 12
NUM_STEPS = 24
HIDDEN = [256, 256, 256]
EPISODE_LENGTH = 250  # truncation; about 1 in 200 steps also terminates
POOL = 16  # distinct precomputed steps the env cycles through


def random_obs(num_envs: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One pool entry of :class:`ZeroCostEnv`'s default observations: standard normal, OBS_DIMS wide."""
    return {group: torch.randn(num_envs, dim, generator=generator) for group, dim in OBS_DIMS.items()}


class ZeroCostEnv:
    """N envs whose step costs ~nothing: observations, rewards and terminations come from a pool.
    ``make_obs(num_envs, generator)`` draws one pool entry's observations (default :func:`random_obs`)."""

    def __init__(self, num_envs: int, seed: int = 0, make_obs=random_obs) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.num_envs = num_envs
        self.obs_pool = [make_obs(num_envs, generator) for _ in range(POOL)]
        self.reward_pool = torch.randn(POOL, num_envs, generator=generator)
        self.terminated_pool = torch.rand(POOL, num_envs, generator=generator) < 1 / 200
        self.episode_length = torch.randint(0, EPISODE_LENGTH, (num_envs,), generator=generator)
        self.t = 0

    def reset(self) -> dict[str, torch.Tensor]:
        return self.obs_pool[0]

    def step(self, actions: torch.Tensor) -> EnvStep:
        """The step a :class:`robolearn.rollout.TorchEnv` returns (finished envs already reset)."""
        self.t += 1
        i = self.t % POOL
        self.episode_length += 1
        terminated = self.terminated_pool[i]
        truncated = (self.episode_length >= EPISODE_LENGTH) & ~terminated
        self.episode_length.masked_fill_(terminated | truncated, 0)
        ids = truncated.nonzero().squeeze(1) if truncated.any() else None
        # a pool entry stands in for the pre-reset observations of the truncated envs
        final_obs = None if ids is None else {g: x[ids] for g, x in self.obs_pool[(i + POOL // 2) % POOL].items()}
        return EnvStep(self.obs_pool[i], self.reward_pool[i], (terminated | truncated).float(), ids, final_obs, {})


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- robolearn ----------------------------------------------------------------------------------

class RobolearnLearner:
    """robolearn's model, PPO and storage, driven the way its trainer drives them: ``policy`` (default
    the [256, 256, 256] ELU MLPs) on a :class:`ZeroCostEnv` serving ``obs_dims`` (``obs_shapes``
    where a group holds an image)."""

    def __init__(self, num_envs: int, policy: PolicyConfig | None = None, obs_dims: dict[str, int] = OBS_DIMS,
                 action_dim: int = ACTION_DIM, obs_shapes: dict | None = None, make_obs=random_obs) -> None:
        self.env = ZeroCostEnv(num_envs, make_obs=make_obs)
        policy = policy or PolicyConfig(actor_hidden=HIDDEN, critic_hidden=HIDDEN, activation="elu",
                                        normalize_obs=True, critic_obs="critic")
        self.model = build_policy(policy, obs_dims, action_dim, obs_shapes=obs_shapes)
        self.ppo = PPO(self.model, **AlgorithmConfig(num_epochs=5, num_minibatches=4, entropy_coef=0.005, lr=1e-3,
                                                     lr_schedule="adaptive").algorithm_kwargs())
        self.state = self.model.initial_state(num_envs)
        self.storage = RolloutStorage(NUM_STEPS, num_envs, obs_dims, action_dim, self.state.shape)
        self.obs = self.env.reset()

    def learn(self, iterations: int) -> None:
        for _ in range(iterations):
            self.collect()
            self.ppo.update(self.storage)

    def collect(self) -> None:
        self.obs, self.state, _ = collect_rollout(self.model, self.env, self.storage, self.obs, self.state)

    def actor_parameters(self) -> int:
        """Parameters on the action path (encoder, normaliser, MLP, std): everything that is not the critic's."""
        return sum(p.numel() for name, p in self.model.named_parameters() if "critic" not in name)


# --- rsl_rl -------------------------------------------------------------------------------------

class RslRlZeroCostEnv(VecEnv):
    """The same env behind rsl_rl's VecEnv interface (truncations reported as ``time_outs``);
    ``to_groups`` maps each pool entry to the observation groups rsl_rl's models read, precomputed
    once (default: the same groups)."""

    def __init__(self, num_envs: int, make_obs=random_obs, to_groups=lambda obs: obs,
                 action_dim: int = ACTION_DIM) -> None:
        self.env = ZeroCostEnv(num_envs, make_obs=make_obs)
        self.num_envs = num_envs
        self.num_actions = action_dim
        self.max_episode_length = EPISODE_LENGTH
        self.episode_length_buf = self.env.episode_length
        self.device = "cpu"
        self.cfg = {}
        self.obs_pool = [to_groups(obs) for obs in self.env.obs_pool]
        self.obs = TensorDict(self.obs_pool[0], batch_size=[num_envs])

    def get_observations(self) -> TensorDict:
        return self.obs

    def step(self, actions: torch.Tensor):
        step = self.env.step(actions)
        self.obs = TensorDict(self.obs_pool[self.env.t % POOL], batch_size=[self.num_envs])
        truncated = torch.zeros(self.num_envs, dtype=torch.bool)
        if step.truncated_ids is not None:
            truncated[step.truncated_ids] = True
        return self.obs, step.rewards, step.dones.bool(), {"time_outs": truncated}


RSL_RL_CONFIG = {
    "num_steps_per_env": NUM_STEPS,
    "save_interval": 10**9,
    "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
    "algorithm": {
        "class_name": "PPO", "num_learning_epochs": 5, "num_mini_batches": 4, "clip_param": 0.2,
        "gamma": 0.99, "lam": 0.95, "value_loss_coef": 1.0, "entropy_coef": 0.005,
        "learning_rate": 1e-3, "max_grad_norm": 1.0, "use_clipped_value_loss": True,
        "schedule": "adaptive", "desired_kl": 0.01, "normalize_advantage_per_mini_batch": True,
    },
    "actor": {
        "class_name": "MLPModel", "hidden_dims": HIDDEN, "activation": "elu", "obs_normalization": True,
        "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0},
    },
    "critic": {
        "class_name": "MLPModel", "hidden_dims": HIDDEN, "activation": "elu", "obs_normalization": True,
    },
}


class RslRlLearner:
    """rsl_rl's own OnPolicyRunner (no log dir: no writer, no checkpoints) on ``env`` (default the
    MLP setting's :class:`RslRlZeroCostEnv`)."""

    def __init__(self, num_envs: int, config: dict = RSL_RL_CONFIG, env: VecEnv | None = None) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints both models
            self.runner = OnPolicyRunner(env or RslRlZeroCostEnv(num_envs), copy.deepcopy(config),
                                         log_dir=None, device="cpu")

    def learn(self, iterations: int) -> None:
        self.runner.learn(iterations)

    def actor_parameters(self) -> int:
        return parameter_count(self.runner.alg.actor)


# --- measurement --------------------------------------------------------------------------------

def steps_per_second(learner, num_envs: int, iterations: int) -> float:
    start = time.perf_counter()
    learner.learn(iterations)
    return iterations * NUM_STEPS * num_envs / (time.perf_counter() - start)


def parse_args(description: str, num_envs: list[int], iterations: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--num-envs", type=int, nargs="+", default=num_envs)
    parser.add_argument("--iterations", type=int, default=iterations, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads, same for both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args


def alternating_rates(learners: dict, num_envs: int, iterations: int, warmup: int, rounds: int) -> dict[str, float]:
    """Median steps/s of each learner, after ``warmup`` iterations each, rounds alternating."""
    for learner in learners.values():
        learner.learn(warmup)
    rates: dict[str, list[float]] = {name: [] for name in learners}
    for _ in range(rounds):
        for name, learner in learners.items():
            rates[name].append(steps_per_second(learner, num_envs, iterations))
    print(f"N={num_envs}: " + ", ".join(f"{name} {[round(r) for r in rates[name]]}" for name in rates)
          + " steps/s", flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


def compare(make_learners, args: argparse.Namespace) -> tuple[list[tuple[int, float, float]], dict[str, int]]:
    """Median steps/s of robolearn's and rsl_rl's learner per N (``make_learners(N)`` ->
    {"robolearn": ..., "rsl_rl": ...}); also each one's actor parameters."""
    rows, params = [], {}
    for num_envs in args.num_envs:
        learners = make_learners(num_envs)
        params = {name: learner.actor_parameters() for name, learner in learners.items()}
        rates = alternating_rates(learners, num_envs, args.iterations, args.warmup, args.rounds)
        rows.append((num_envs, rates["robolearn"], rates["rsl_rl"]))
    return rows, params


def print_table(title: str, rows: list[tuple[int, float, float]]) -> None:
    print(f"\n{title}")
    print(f"{'N':>6} | {'robolearn steps/s':>17} | {'rsl_rl steps/s':>14} | ours/rsl_rl")
    print(f"{'-' * 6}-+-{'-' * 17}-+-{'-' * 14}-+------------")
    for num_envs, ours, theirs in rows:
        print(f"{num_envs:>6} | {ours:>17,.0f} | {theirs:>14,.0f} | {ours / theirs:>10.2f}x")


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0], num_envs=[256, 1024], iterations=20)
    rows, _ = compare(lambda n: {"robolearn": RobolearnLearner(n), "rsl_rl": RslRlLearner(n)}, args)
    print_table(f"PPO learner, zero-cost env, {NUM_STEPS} steps x N, 5 epochs x 4 minibatches, "
                f"[256,256,256] ELU, torch {torch.__version__}, {args.threads} threads, "
                f"median of {args.rounds} x {args.iterations} iterations", rows)


if __name__ == "__main__":
    main()
