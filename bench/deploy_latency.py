"""Latency of exported policies at batch 1 on one thread: PolicyRunner.step vs the raw ONNX Runtime call.

Exports (through the parity gate) a freshly initialised MLP [256, 256] actor-critic, an LSTM
actor-critic with 128 hidden units and a transformer of the default size (context 32, 2 blocks, 4
heads, width 64, its context carried as ``ctx_in``/``ctx_out``), the two with memory with the
[128] head of the NavPO configs, all for robolearn/Nav-v0, then times each the way
``robolearn deploy-bench EXPORT_DIR`` does. Goals: PolicyRunner.step p99 <= 50 µs (MLP),
<= 100 µs (LSTM, DESIGN section 6) and <= 200 µs (transformer).

    python bench/deploy_latency.py [--calls 20000]

Run it alone: on 2 cores a figure taken beside another job is void.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from robolearn.deploy.export import export_policy
from robolearn.deploy.latency import measure_latency
from robolearn.envs import make_env
from robolearn.envs.diffdrive import NavConfig
from robolearn.config import PolicyConfig, RecurrentPolicyConfig, TransformerPolicyConfig
from robolearn.models import build_policy

GOALS_P99_US = {"MLP 256x256": 50.0, "LSTM 128": 100.0, "Transformer": 200.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()

    env = make_env(NavConfig(num_envs=4, nthread=1), seed=0)
    obs_dims = {group: layout.size for group, layout in env.obs_layout.items()}
    torch.manual_seed(0)
    configs = {"MLP 256x256": PolicyConfig(actor_hidden=[256, 256]),
               "LSTM 128": RecurrentPolicyConfig.model_validate({"class": "lstm", "rnn_hidden": 128,
                                                                 "actor_hidden": [128]}),
               "Transformer": TransformerPolicyConfig.model_validate({"class": "transformer", "actor_hidden": [128]})}
    models = {name: build_policy(config, obs_dims, 2) for name, config in configs.items()}
    print(f"batch 1, 1 thread, {args.calls} calls each; µs")
    print(f"{'policy':14s}{'path':20s}{'p50':>8s}{'p99':>8s}{'max':>9s}  parity (max abs diff)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            normalizer = model.obs_normalizers["policy"]  # statistics as after training
            normalizer.mean.normal_()
            normalizer.var.uniform_(0.1, 3.0)
            export = export_policy(model.deployable_actor(), env, Path(tmp) / name.replace(" ", "_"),
                                   task="robolearn/Nav-v0", formats=["onnx"])
            parity = export.contract["parity"]["max_abs_diff"]["onnxruntime"]
            for path, row in measure_latency(export.out_dir, args.calls).items():
                goal = f"  (goal p99 <= {GOALS_P99_US[name]:g})" if path == "PolicyRunner.step" else ""
                print(f"{name:14s}{path:20s}{row['p50_us']:8.1f}{row['p99_us']:8.1f}{row['max_us']:9.1f}"
                      f"  {parity:.1e}{goal}")
    env.close()


if __name__ == "__main__":
    main()
