"""End-to-end PPO training on robolearn/Nav-v0: robolearn vs Stable-Baselines3, same wall-clock budget.

  robolearn  ``robolearn train configs/nav.yaml`` (batched env, 256 envs), stopped at the budget;
  SB3        ``stable_baselines3.PPO("MlpPolicy")`` on the single-env gymnasium view in its usual
             ``make_vec_env(..., n_envs=8)`` DummyVecEnv setup, default hyper-parameters, stopped at
             the same budget.

Both policies are then evaluated the same way: deterministic actions, the same held-out layouts,
``--episodes`` complete episodes. Prints env steps/s of each, the ratio, and each success rate.

    pip install -e ".[bench]"
    python bench/train_vs_sb3.py [--seconds 120] [--episodes 200]

Run it alone: on 2 cores a figure taken beside another job is void.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import robolearn.envs  # noqa: F401  (registers the tasks)
from robolearn.config import load_config
from robolearn.envs import make_env
from robolearn.evaluation import run_episodes
from robolearn.logger import ProgressDisplay
from robolearn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED = 12345


def train_robolearn(seconds: float, run_dir: Path):
    config = load_config(ROOT / "configs" / "nav.yaml", [f"trainer.max_seconds={seconds}", "trainer.max_env_steps=null",
                                                        "device=cpu"])
    trainer = Trainer(config, run_dir, progress=ProgressDisplay(log_interval=50))
    start = time.perf_counter()
    trainer.learn()
    elapsed = time.perf_counter() - start
    return trainer.policy.eval(), config, trainer.env_steps, elapsed


class SB3Policy:
    """Lets :func:`robolearn.evaluation.run_episodes` drive an SB3 model (deterministic actions
    from the policy group; SB3 keeps no state between calls of an MLP policy)."""

    def __init__(self, model):
        self.model = model

    def initial_state(self, num_envs):
        return torch.zeros(num_envs, 0)

    def reset_state(self, state, dones):
        return state

    def act_inference(self, obs, state):
        actions, _ = self.model.predict(obs["policy"].numpy(), deterministic=True)
        return torch.as_tensor(actions), state


def learn_sb3_for(seconds: float, algorithm, policy: str, task: str, seed: int):
    """An SB3 (or sb3-contrib) model trained on ``task``'s single-env view in SB3's usual
    ``make_vec_env(..., n_envs=8)`` DummyVecEnv setup, default hyper-parameters, until ``seconds``
    of wall-clock have passed; returns ``(model, env steps, seconds)``."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class WallClockBudget(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            return time.perf_counter() - self.start < seconds

    envs = make_vec_env(task, n_envs=8, seed=seed)
    model = algorithm(policy, envs, seed=seed, verbose=0, device="cpu")
    budget = WallClockBudget()
    model.learn(total_timesteps=10**9, callback=budget)
    elapsed = time.perf_counter() - budget.start
    envs.close()
    return model, model.num_timesteps, elapsed


def train_sb3(seconds: float, seed: int):
    from stable_baselines3 import PPO

    model, steps, elapsed = learn_sb3_for(seconds, PPO, "MlpPolicy", "robolearn/Nav-v0", seed)
    return SB3Policy(model), steps, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="wall-clock training budget of each")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes of each")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ours, config, ours_steps, ours_s = train_robolearn(args.seconds, Path(tmp) / "run")
        eval_env = make_env(config.env.model_copy(update={"num_envs": 50}), seed=EVAL_SEED)
        ours_eval = run_episodes(ours, eval_env, args.episodes)
    sb3, sb3_steps, sb3_s = train_sb3(args.seconds, seed=config.seed)
    eval_env = make_env(config.env.model_copy(update={"num_envs": 50}), seed=EVAL_SEED)
    sb3_eval = run_episodes(sb3, eval_env, args.episodes)

    rows = [("robolearn PPO (256 envs)", ours_steps, ours_s, ours_eval),
            ("SB3 PPO (8 envs, DummyVecEnv)", sb3_steps, sb3_s, sb3_eval)]
    print(f"\nrobolearn/Nav-v0, {args.seconds:.0f} s budget each, eval: {args.episodes} episodes, deterministic")
    header = f"{'trainer':<32} {'env steps':>11} {'seconds':>8} {'steps/s':>9} {'success':>8} {'SPL':>6}"
    print(header)
    print("-" * len(header))
    for name, steps, secs, result in rows:
        print(f"{name:<32} {steps:>11,} {secs:>8.1f} {steps / secs:>9,.0f} {result['success_rate']:>8.1%} "
              f"{result['spl_mean']:>6.3f}")
    ratio = (ours_steps / ours_s) / (sb3_steps / sb3_s)
    print(f"steps/s ratio robolearn / SB3: {ratio:.1f}x")


if __name__ == "__main__":
    main()
