"""Policies with memory: transformer vs LSTM vs MLP on robolearn/NavPO-v0, their learners, and LSTM
PPO throughput against peers.

Four measurements, each pair taken in the same run:

1. **Memory matters.** ``configs/nav_po_transformer.yaml``, ``configs/nav_po_lstm.yaml`` and
   ``configs/nav_po_mlp.yaml`` (the same experiment, asymmetric critic, with a transformer, an
   LSTM or an MLP actor) trained for the same wall-clock budget, then evaluated the same way:
   deterministic actions, held-out layouts, ``--episodes`` complete episodes (a policy with memory
   through its ``act_inference``, the export path, carrying its state or context).
2. **End to end on NavPO.** Env steps/s of our LSTM PPO run (1.) vs sb3-contrib's
   ``RecurrentPPO("MlpLstmPolicy")`` on the single-env gymnasium view in its usual
   ``make_vec_env(..., n_envs=8)`` setup, default hyper-parameters, for ``--sb3-seconds``.
3. **Learner alone.** Our LSTM PPO vs rsl_rl 5.5.1's (``RNNModel``) on the zero-cost env of
   ``bench/learner_vs_rsl_rl.py``: the same network (LSTM 256 then [256, 256, 256] ELU, actor and
   critic each), 24 steps x N, 5 epochs x 4 minibatches, adaptive lr; rounds alternate.
4. **Transformer vs LSTM learner.** The policy and algorithm sections of
   ``nav_po_transformer.yaml`` and ``nav_po_lstm.yaml`` on the same zero-cost env (24 steps x N):
   rollout collection (one new token per step vs one LSTM step) plus the update (whole rollouts
   in one masked attention call vs the cell over padded segments); rounds alternate.

    pip install -e ".[bench]"      # stable-baselines3, sb3-contrib, rsl-rl-lib 5.5.1
    python bench/recurrent.py [--seconds 300] [--sb3-seconds 60] [--episodes 200] [--num-envs 256]
    python bench/recurrent.py --skip sb3 learner     # without the peers: 1. and 4. only

Run it alone: on 2 cores a figure taken beside another job is void.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

from learner_vs_rsl_rl import (ACTION_DIM, HIDDEN, NUM_STEPS, OBS_DIMS, RSL_RL_CONFIG, RobolearnLearner, RslRlLearner,
                               ZeroCostEnv, alternating_rates)
from train_vs_sb3 import learn_sb3_for
from robolearn.algorithms import PPO
from robolearn.config import RecurrentPolicyConfig, load_config
from robolearn.envs import make_env
from robolearn.evaluation import run_episodes
from robolearn.logger import ProgressDisplay
from robolearn.models import build_policy
from robolearn.rollout import collect_rollout
from robolearn.storage import RolloutStorage
from robolearn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED = 12345
RNN_HIDDEN = 256
NAVPO_POLICIES = ("transformer", "lstm", "mlp")


# --- 1. transformer vs LSTM vs MLP on NavPO -------------------------------------------------------

def train(config_name: str, seconds: float, run_dir: Path):
    config = load_config(ROOT / "configs" / config_name,
                         [f"trainer.max_seconds={seconds}", "trainer.max_env_steps=null", "device=cpu"])
    trainer = Trainer(config, run_dir, progress=ProgressDisplay(log_interval=50))
    trainer.learn()
    return trainer.policy.eval(), config, trainer.env_steps / trainer.wall_s


def success_rate(model, config, episodes: int, num_envs: int = 50) -> float:
    """Deterministic actions on held-out layouts (``robolearn eval``'s episode accounting; an
    actor with memory runs it with the state reset at every episode start)."""
    env = make_env(config.env.model_copy(update={"num_envs": num_envs}), seed=EVAL_SEED)
    return run_episodes(model, env, episodes)["success_rate"]


# --- 2. sb3-contrib RecurrentPPO on NavPO -----------------------------------------------------------

def sb3_recurrent_steps_per_second(seconds: float, seed: int = 1) -> float:
    from sb3_contrib import RecurrentPPO

    _, steps, elapsed = learn_sb3_for(seconds, RecurrentPPO, "MlpLstmPolicy", "robolearn/NavPO-v0", seed)
    return steps / elapsed


# --- 3. learner alone: robolearn vs rsl_rl, LSTM ----------------------------------------------------

LSTM_POLICY = RecurrentPolicyConfig.model_validate({
    "class": "lstm", "rnn_hidden": RNN_HIDDEN, "rnn_layers": 1, "actor_hidden": HIDDEN, "critic_hidden": HIDDEN,
    "activation": "elu", "normalize_obs": True, "critic_obs": "critic"})
RSL_RL_LSTM_CONFIG = copy.deepcopy(RSL_RL_CONFIG)
for _name in ("actor", "critic"):
    RSL_RL_LSTM_CONFIG[_name].update(class_name="RNNModel", rnn_type="lstm", rnn_hidden_dim=RNN_HIDDEN,
                                     rnn_num_layers=1)


def learner_rates(num_envs: int, iterations: int, warmup: int, rounds: int) -> tuple[float, float]:
    """robolearn's LSTM actor-critic against rsl_rl's RNNModel actor and critic, both on the zero-cost env."""
    learners = {"robolearn": RobolearnLearner(num_envs, LSTM_POLICY),
                "rsl_rl": RslRlLearner(num_envs, RSL_RL_LSTM_CONFIG)}
    rates = alternating_rates(learners, num_envs, iterations, warmup, rounds)
    return rates["robolearn"], rates["rsl_rl"]


# --- 4. learner alone: transformer vs LSTM, the NavPO configs' networks --------------------------

class ConfigLearner:
    """robolearn's collection, storage and PPO with the policy and algorithm sections of an
    experiment config, on the zero-cost env (24 steps x N)."""

    def __init__(self, config_name: str, num_envs: int) -> None:
        config = load_config(ROOT / "configs" / config_name)
        self.env = ZeroCostEnv(num_envs)
        self.model = build_policy(config.policy, OBS_DIMS, ACTION_DIM)
        self.ppo = PPO(self.model, **config.algorithm.algorithm_kwargs())
        state_shape = self.model.initial_state(num_envs).shape
        self.storage = RolloutStorage(NUM_STEPS, num_envs, OBS_DIMS, ACTION_DIM, state_shape)
        self.obs, self.state = self.env.reset(), self.model.initial_state(num_envs)

    def learn(self, iterations: int) -> None:
        for _ in range(iterations):
            self.obs, self.state, _ = collect_rollout(self.model, self.env, self.storage, self.obs, self.state)
            self.ppo.update(self.storage)


def memory_learner_rates(num_envs: int, iterations: int, warmup: int, rounds: int) -> dict[str, float]:
    """Median steps/s of the transformer and LSTM learners, rounds alternating."""
    learners = {name: ConfigLearner(f"nav_po_{name}.yaml", num_envs) for name in ("transformer", "lstm")}
    return alternating_rates(learners, num_envs, iterations, warmup, rounds)


# --- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget of each NavPO run")
    parser.add_argument("--sb3-seconds", type=float, default=60.0, help="sb3-contrib RecurrentPPO budget")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per policy")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256], help="learner benchmark sizes")
    parser.add_argument("--iterations", type=int, default=10, help="timed learner iterations per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads, same for all")
    parser.add_argument("--skip", nargs="*", default=[], choices=["navpo", "sb3", "learner", "memory-learner"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if "learner" not in args.skip:
        torch.manual_seed(0)
        learner_rows = [(n, *learner_rates(n, args.iterations, args.warmup, args.rounds)) for n in args.num_envs]
        print(f"\nLSTM PPO learner, zero-cost env, {NUM_STEPS} steps x N, 5 epochs x 4 minibatches, "
              f"LSTM {RNN_HIDDEN} + {HIDDEN} ELU, torch {torch.__version__}, {args.threads} threads, "
              f"median of {args.rounds} x {args.iterations} iterations")
        print(f"{'N':>6} | {'robolearn steps/s':>17} | {'rsl_rl steps/s':>14} | ours/rsl_rl")
        print(f"{'-' * 6}-+-{'-' * 17}-+-{'-' * 14}-+------------")
        for num_envs, ours, theirs in learner_rows:
            print(f"{num_envs:>6} | {ours:>17,.0f} | {theirs:>14,.0f} | {ours / theirs:>10.2f}x", flush=True)

    if "memory-learner" not in args.skip:
        torch.manual_seed(0)
        rows = [(n, memory_learner_rates(n, args.iterations, args.warmup, args.rounds)) for n in args.num_envs]
        print(f"\nTransformer vs LSTM PPO learner, zero-cost env, {NUM_STEPS} steps x N, the policy and algorithm "
              f"sections of nav_po_transformer.yaml / nav_po_lstm.yaml, torch {torch.__version__}, {args.threads} "
              f"threads, median of {args.rounds} x {args.iterations} iterations")
        print(f"{'N':>6} | {'transformer steps/s':>19} | {'LSTM steps/s':>12} | transformer/LSTM")
        print(f"{'-' * 6}-+-{'-' * 19}-+-{'-' * 12}-+-----------------")
        for num_envs, rates in rows:
            print(f"{num_envs:>6} | {rates['transformer']:>19,.0f} | {rates['lstm']:>12,.0f} | "
                  f"{rates['transformer'] / rates['lstm']:>15.2f}x", flush=True)

    if "navpo" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            results = {}
            for name in NAVPO_POLICIES:
                print(f"\ntraining nav_po_{name}.yaml for {args.seconds:.0f} s", flush=True)
                model, config, rate = train(f"nav_po_{name}.yaml", args.seconds, Path(tmp) / name)
                results[name] = (rate, success_rate(model, config, args.episodes))
        print(f"\nNavPO-v0, {args.seconds:.0f} s training each, {args.episodes} deterministic evaluation episodes")
        print(f"{'policy':>11} | {'train steps/s':>13} | success")
        print(f"{'-' * 11}-+-{'-' * 13}-+--------")
        for name, (rate, success) in results.items():
            print(f"{name:>11} | {rate:>13,.0f} | {success:>6.1%}")
        print(f"transformer - LSTM: {100 * (results['transformer'][1] - results['lstm'][1]):+.1f} success points "
              "(goal: >= -5)")
        print(f"LSTM - MLP: {100 * (results['lstm'][1] - results['mlp'][1]):+.1f} success points", flush=True)

        if "sb3" not in args.skip:
            print(f"\ntraining sb3-contrib RecurrentPPO for {args.sb3_seconds:.0f} s", flush=True)
            sb3_rate = sb3_recurrent_steps_per_second(args.sb3_seconds)
            ours = results["lstm"][0]
            print(f"\nLSTM PPO end to end on NavPO-v0: robolearn {ours:,.0f} steps/s, sb3-contrib RecurrentPPO "
                  f"(8 envs) {sb3_rate:,.0f} steps/s: {ours / sb3_rate:.1f}x")


if __name__ == "__main__":
    main()
