"""PPO learner throughput with a depth image in the policy observation, robolearn vs rsl_rl 5.5.1.

The setting of robolearn's NavDepth-v0 task on a zero-cost synthetic env: the actor reads a 24 x 32
depth image (metres, uniform in [0, 4]) through a CNN plus 7 vector values (goal 3, velocity 2,
last action 2); the critic reads 29 privileged vector values and no pixels; 2 actions. The env
serves precomputed observations and rewards from a pool, so what is timed is the learner: rollout
collection (policy and value inference, storage) plus the update. rsl_rl is driven by its own
OnPolicyRunner with its ``CNNModel`` actor; robolearn by ``robolearn.rollout.collect_rollout``
(the trainer's loop) and ``PPO.update`` with ``build_policy(..., obs_shapes=...)``. Rounds
alternate between the two to share any drift in machine load.

    python bench/learner_cnn_vs_rsl_rl.py --num-envs 256 --iterations 10

Same for both learners:

* PPO: 24 steps x N envs per rollout, 5 epochs x 4 minibatches, Adam at lr 1e-3 with the
  KL-adaptive schedule (desired KL 0.01), clip 0.2, clipped value loss, value coefficient 1.0,
  entropy 0.005, gradient norm 1.0, gamma 0.99, lambda 0.95, per-minibatch advantage
  normalisation, Gaussian actions with a learned state-independent std (init 1.0);
* actor CNN: two convolutions without padding, 16 channels kernel 5 stride 2 then 32 channels
  kernel 3 stride 2, each followed by ELU, on the 1-channel 24 x 32 image (feature map 32 x 4 x 6);
  the image is not normalised, the 7 actor vector values are (a running mean/std normaliser);
* actor head [128, 128] ELU on [normalised vectors, image features], in that order;
* critic: [128, 128] ELU MLP on the normalised 29 privileged values, no CNN (actor and critic
  share nothing);
* the observation values, rewards, terminations and truncations (the same pool and seed).

What differs:

* rsl_rl's ``CNN`` has no projection layer: it flattens the 32 x 4 x 6 map (768 values) straight
  into the head, whose first layer is then 775 -> 128. robolearn's encoder projects the 768 values
  to 64 features (linear + ELU) and its head's first layer is 71 -> 128. Per sample the actor is
  ~0.24 M multiply-adds in robolearn and ~0.28 M in rsl_rl (the convolutions, 0.17 M, are the
  same); the script prints both actors' parameter counts.
* Observation layout: a robolearn group is one flat vector (here 768 image + 7 vector values =
  775) that the policy slices; rsl_rl's ``CNNModel`` needs the image as its own group of shape
  [N, 1, 24, 32], so its env serves ``depth`` [N, 1, 24, 32] and ``policy`` [N, 7] (plus
  ``critic`` [N, 29]), precomputed contiguous tensors holding the same values. Each stores its
  observations in its own rollout storage in its own layout.
* ELU: robolearn's are in place (``inplace=True``), rsl_rl's are not (one more tensor per layer).
* Initialisation: robolearn's CNN is orthogonal (gain sqrt 2); rsl_rl's CNN keeps PyTorch's
  default (its ``CNN.init_weights`` is not called by ``CNNModel``). No effect on speed.
* Truncations (as in ``learner_vs_rsl_rl.py``): robolearn bootstraps a truncated env from the
  critic's value of its true last observation (one extra critic pass on the few truncated envs);
  rsl_rl from the value of the observation it stepped from (``time_outs``, no extra pass).

Needs ``pip install rsl-rl-lib==5.5.1`` (with tensordict; no CUDA torch needed). Run it alone:
on 2 cores any other job voids the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import statistics
import time

import torch
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict

from robolearn.algorithms import PPO
from robolearn.config import AlgorithmConfig, EncoderConfig, PolicyConfig
from robolearn.models import build_policy
from robolearn.rollout import EnvStep, collect_rollout
from robolearn.storage import RolloutStorage

DEPTH = (24, 32)  # H, W: row-major in the policy vector, metres
MAX_DEPTH = 4.0
OBS_SHAPES = {
    "policy": {"depth": DEPTH, "goal": (3,), "velocity": (2,), "last_action": (2,)},
    "critic": {"goal": (3,), "velocity": (2,), "last_action": (2,), "lidar": (16,), "base_pose": (4,),
               "goal_position": (2,)},
}
OBS_DIMS = {group: sum(math.prod(shape) for shape in terms.values()) for group, terms in OBS_SHAPES.items()}
IMAGE_SIZE = math.prod(DEPTH)  # the image is the first term of the policy group
ACTION_DIM = 2
NUM_STEPS = 24
HIDDEN = [128, 128]
CHANNELS, KERNEL_SIZES, STRIDES, FEATURES = [16, 32], [5, 3], [2, 2], 64
EPISODE_LENGTH = 250  # truncation; about 1 in 200 steps also terminates
POOL = 16  # distinct precomputed steps the env cycles through


class ZeroCostEnv:
    """N envs whose step costs ~nothing: observations, rewards and terminations come from a pool.
    The policy group is robolearn's flat layout: the depth image row-major, then the 7 vectors."""

    def __init__(self, num_envs: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.num_envs = num_envs
        self.obs_pool = []
        for _ in range(POOL):
            depth = torch.rand(num_envs, IMAGE_SIZE, generator=generator) * MAX_DEPTH
            vectors = torch.randn(num_envs, OBS_DIMS["policy"] - IMAGE_SIZE, generator=generator)
            self.obs_pool.append({"policy": torch.cat([depth, vectors], dim=1),
                                  "critic": torch.randn(num_envs, OBS_DIMS["critic"], generator=generator)})
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
    """robolearn's model, PPO and storage, driven the way its trainer drives them."""

    def __init__(self, num_envs: int) -> None:
        self.env = ZeroCostEnv(num_envs)
        policy = PolicyConfig(actor_hidden=HIDDEN, critic_hidden=HIDDEN, activation="elu", normalize_obs=True,
                              critic_obs="critic", encoder=EncoderConfig(channels=CHANNELS, kernel_sizes=KERNEL_SIZES,
                                                                         strides=STRIDES, features=FEATURES))
        self.model = build_policy(policy, OBS_DIMS, ACTION_DIM, obs_shapes=OBS_SHAPES)
        self.ppo = PPO(self.model, **AlgorithmConfig(num_epochs=5, num_minibatches=4, entropy_coef=0.005, lr=1e-3,
                                                     lr_schedule="adaptive").algorithm_kwargs())
        self.state = self.model.initial_state(num_envs)
        self.storage = RolloutStorage(NUM_STEPS, num_envs, OBS_DIMS, ACTION_DIM, self.state.shape)
        self.obs = self.env.reset()

    def learn(self, iterations: int) -> None:
        for _ in range(iterations):
            self.collect()
            self.ppo.update(self.storage)

    def collect(self) -> None:
        self.obs, self.state, _ = collect_rollout(self.model, self.env, self.storage, self.obs, self.state)

    def actor_parameters(self) -> int:
        """Parameters on the action path (CNN, normaliser, MLP, std): everything that is not the critic's."""
        return sum(p.numel() for name, p in self.model.named_parameters() if "critic" not in name)


# --- rsl_rl -------------------------------------------------------------------------------------

class RslRlZeroCostEnv(VecEnv):
    """The same env behind rsl_rl's VecEnv interface (truncations reported as ``time_outs``), its
    observations split into the groups rsl_rl's CNNModel reads: ``depth`` [N, 1, H, W] (an image
    group is 4-D), ``policy`` [N, 7] and ``critic`` [N, 29], precomputed once from the pool."""

    def __init__(self, num_envs: int) -> None:
        self.env = ZeroCostEnv(num_envs)
        self.num_envs = num_envs
        self.num_actions = ACTION_DIM
        self.max_episode_length = EPISODE_LENGTH
        self.episode_length_buf = self.env.episode_length
        self.device = "cpu"
        self.cfg = {}
        self.obs_pool = [{"depth": obs["policy"][:, :IMAGE_SIZE].reshape(num_envs, 1, *DEPTH).contiguous(),
                          "policy": obs["policy"][:, IMAGE_SIZE:].contiguous(),
                          "critic": obs["critic"]} for obs in self.env.obs_pool]
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
    "obs_groups": {"actor": ["policy", "depth"], "critic": ["critic"]},
    "algorithm": {
        "class_name": "PPO", "num_learning_epochs": 5, "num_mini_batches": 4, "clip_param": 0.2,
        "gamma": 0.99, "lam": 0.95, "value_loss_coef": 1.0, "entropy_coef": 0.005,
        "learning_rate": 1e-3, "max_grad_norm": 1.0, "use_clipped_value_loss": True,
        "schedule": "adaptive", "desired_kl": 0.01, "normalize_advantage_per_mini_batch": True,
        "share_cnn_encoders": False,
    },
    "actor": {
        "class_name": "CNNModel", "hidden_dims": HIDDEN, "activation": "elu", "obs_normalization": True,
        "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0},
        "cnn_cfg": {"output_channels": CHANNELS, "kernel_size": KERNEL_SIZES, "stride": STRIDES,
                    "activation": "elu", "padding": "none", "norm": "none", "max_pool": False,
                    "global_pool": "none", "flatten": True},
    },
    "critic": {
        "class_name": "MLPModel", "hidden_dims": HIDDEN, "activation": "elu", "obs_normalization": True,
    },
}


class RslRlLearner:
    """rsl_rl's own OnPolicyRunner (no log dir: no writer, no checkpoints)."""

    def __init__(self, num_envs: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints both models
            self.runner = OnPolicyRunner(RslRlZeroCostEnv(num_envs), copy.deepcopy(RSL_RL_CONFIG),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256])
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads, same for both")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    params = {}
    for num_envs in args.num_envs:
        learners = {"robolearn": RobolearnLearner(num_envs), "rsl_rl": RslRlLearner(num_envs)}
        params = {name: learner.actor_parameters() for name, learner in learners.items()}
        for learner in learners.values():
            learner.learn(args.warmup)
        rates: dict[str, list[float]] = {name: [] for name in learners}
        for _ in range(args.rounds):
            for name, learner in learners.items():
                rates[name].append(steps_per_second(learner, num_envs, args.iterations))
        ours, theirs = statistics.median(rates["robolearn"]), statistics.median(rates["rsl_rl"])
        rows.append((num_envs, ours, theirs))
        print(f"N={num_envs}: robolearn {[round(r) for r in rates['robolearn']]}, "
              f"rsl_rl {[round(r) for r in rates['rsl_rl']]} steps/s", flush=True)

    print(f"\nPPO learner, zero-cost env, policy obs = {DEPTH[0]}x{DEPTH[1]} depth image + 7 vectors, critic obs = "
          f"{OBS_DIMS['critic']} privileged vectors, {ACTION_DIM} actions; {NUM_STEPS} steps x N, 5 epochs x 4 "
          f"minibatches; actor CNN conv{CHANNELS} k{KERNEL_SIZES} s{STRIDES} ELU (robolearn: + linear "
          f"{FEATURES}), heads {HIDDEN} ELU; actor parameters robolearn {params['robolearn']:,}, rsl_rl "
          f"{params['rsl_rl']:,}; torch {torch.__version__}, {args.threads} threads, median of {args.rounds} x "
          f"{args.iterations} iterations")
    print(f"{'N':>6} | {'robolearn steps/s':>17} | {'rsl_rl steps/s':>14} | ours/rsl_rl")
    print(f"{'-' * 6}-+-{'-' * 17}-+-{'-' * 14}-+------------")
    for num_envs, ours, theirs in rows:
        print(f"{num_envs:>6} | {ours:>17,.0f} | {theirs:>14,.0f} | {ours / theirs:>10.2f}x")


if __name__ == "__main__":
    main()
