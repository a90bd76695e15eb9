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
* Truncations (as in ``learner_vs_rsl_rl.py``, whose harness this script reuses): robolearn
  bootstraps a truncated env from the critic's value of its true last observation (one extra
  critic pass on the few truncated envs); rsl_rl from the value of the observation it stepped
  from (``time_outs``, no extra pass).

Needs ``pip install rsl-rl-lib==5.5.1`` (with tensordict; no CUDA torch needed). Run it alone:
on 2 cores any other job voids the figures.
"""

from __future__ import annotations

import copy
import math

import torch

from learner_vs_rsl_rl import (NUM_STEPS, RSL_RL_CONFIG, RobolearnLearner, RslRlLearner, RslRlZeroCostEnv, compare,
                               parse_args, print_table)
from robolearn.config import EncoderConfig, PolicyConfig

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
HIDDEN = [128, 128]
CHANNELS, KERNEL_SIZES, STRIDES, FEATURES = [16, 32], [5, 3], [2, 2], 64


def depth_obs(num_envs: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One pool entry in robolearn's flat layout: the depth image row-major, then the 7 vectors."""
    depth = torch.rand(num_envs, IMAGE_SIZE, generator=generator) * MAX_DEPTH
    vectors = torch.randn(num_envs, OBS_DIMS["policy"] - IMAGE_SIZE, generator=generator)
    return {"policy": torch.cat([depth, vectors], dim=1),
            "critic": torch.randn(num_envs, OBS_DIMS["critic"], generator=generator)}


def rsl_rl_groups(obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The groups rsl_rl's CNNModel reads: ``depth`` [N, 1, H, W] (an image group is 4-D),
    ``policy`` [N, 7] and ``critic`` [N, 29]."""
    n = obs["policy"].shape[0]
    return {"depth": obs["policy"][:, :IMAGE_SIZE].reshape(n, 1, *DEPTH).contiguous(),
            "policy": obs["policy"][:, IMAGE_SIZE:].contiguous(), "critic": obs["critic"]}


POLICY = PolicyConfig(actor_hidden=HIDDEN, critic_hidden=HIDDEN, activation="elu", normalize_obs=True,
                      critic_obs="critic", encoder=EncoderConfig(channels=CHANNELS, kernel_sizes=KERNEL_SIZES,
                                                                 strides=STRIDES, features=FEATURES))
RSL_RL_CNN_CONFIG = copy.deepcopy(RSL_RL_CONFIG)
RSL_RL_CNN_CONFIG["obs_groups"] = {"actor": ["policy", "depth"], "critic": ["critic"]}
RSL_RL_CNN_CONFIG["algorithm"]["share_cnn_encoders"] = False
RSL_RL_CNN_CONFIG["actor"].update(
    class_name="CNNModel", hidden_dims=HIDDEN,
    cnn_cfg={"output_channels": CHANNELS, "kernel_size": KERNEL_SIZES, "stride": STRIDES, "activation": "elu",
             "padding": "none", "norm": "none", "max_pool": False, "global_pool": "none", "flatten": True})
RSL_RL_CNN_CONFIG["critic"]["hidden_dims"] = HIDDEN


def learners(num_envs: int) -> dict:
    rsl_env = RslRlZeroCostEnv(num_envs, make_obs=depth_obs, to_groups=rsl_rl_groups, action_dim=ACTION_DIM)
    return {"robolearn": RobolearnLearner(num_envs, POLICY, OBS_DIMS, ACTION_DIM, obs_shapes=OBS_SHAPES,
                                          make_obs=depth_obs),
            "rsl_rl": RslRlLearner(num_envs, RSL_RL_CNN_CONFIG, env=rsl_env)}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0], num_envs=[256], iterations=10)
    rows, params = compare(learners, args)
    print_table(f"PPO learner, zero-cost env, policy obs = {DEPTH[0]}x{DEPTH[1]} depth image + 7 vectors, critic obs = "
                f"{OBS_DIMS['critic']} privileged vectors, {ACTION_DIM} actions; {NUM_STEPS} steps x N, 5 epochs x 4 "
                f"minibatches; actor CNN conv{CHANNELS} k{KERNEL_SIZES} s{STRIDES} ELU (robolearn: + linear "
                f"{FEATURES}), heads {HIDDEN} ELU; actor parameters robolearn {params['robolearn']:,}, rsl_rl "
                f"{params['rsl_rl']:,}; torch {torch.__version__}, {args.threads} threads, median of {args.rounds} x "
                f"{args.iterations} iterations", rows)


if __name__ == "__main__":
    main()
