"""``robolearn`` command line.

    robolearn train CONFIG [KEY=VALUE ...] [--run-dir DIR] [--resume RUN_DIR|CHECKPOINT]
    robolearn eval RUN_DIR|CHECKPOINT [--episodes N] [--num-envs N] [--json] [--video out.mp4]
    robolearn envs                                  registered tasks with obs / action sizes
    robolearn config CONFIG [KEY=VALUE ...]         print the resolved, validated config
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from robolearn.config import ConfigError, load_config


class CommandError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 1."""


def _cmd_train(args: argparse.Namespace) -> int:
    from robolearn.checkpoint import CheckpointError
    from robolearn.runner import OnPolicyRunner, TrainingDiverged

    config = load_config(args.config, args.overrides)
    try:
        if args.resume:
            runner = OnPolicyRunner.from_checkpoint(args.resume, config=config, run_dir=args.run_dir)
        else:
            run_dir = args.run_dir or Path("runs") / config.experiment / time.strftime("%Y%m%d-%H%M%S")
            runner = OnPolicyRunner(config, run_dir)
        runner.learn()
    except CheckpointError as err:
        raise CommandError(str(err)) from None
    except TrainingDiverged as err:
        print(f"robolearn: {err}", file=sys.stderr)
        return 3
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from robolearn.checkpoint import CheckpointError
    from robolearn.envs import make_env
    from robolearn.evaluate import evaluate, load_policy

    try:
        model, config, state = load_policy(args.checkpoint)
    except CheckpointError as err:
        raise CommandError(str(err)) from None
    num_envs = args.num_envs or min(args.episodes, 64)
    env_config = config.env.model_copy(update={"num_envs": num_envs})
    seed = args.seed if args.seed is not None else config.seed + 10_000  # layouts unseen in training
    env = make_env(env_config, seed=seed)
    result = evaluate(model, env, args.episodes, deterministic=args.deterministic, video=args.video)
    result = {"checkpoint": state["path"], "iteration": state["iteration"], "task": config.env.task,
              "deterministic": args.deterministic, "seed": seed, **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{config.env.task}  checkpoint {state['path']} (iteration {state['iteration']})")
        print(f"episodes {result['episodes']}  success {result['success_rate']:.1%}  return {result['return_mean']:.3f}"
              f"  length {result['episode_len']:.1f}"
              + "".join(f"  {k[:-5]} {v:.3f}" for k, v in result.items() if k.endswith("_mean") and k != "return_mean"))
        if args.video:
            print(f"video: {args.video} ({result['video_frames']} frames)")
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    from robolearn.envs.registry import list_tasks

    rows = []
    for spec in list_tasks():
        config = spec.config_cls(num_envs=1, nthread=1)
        env = spec.env_cls(config=config)
        obs = {group: layout.size for group, layout in env.obs_layout.items()}
        terms = ", ".join(f"{name}:{w}" for name, w in env.obs_layout["policy"].widths.items())
        rows.append((spec.name, obs["policy"], obs["critic"], env.single_action_space.shape[0],
                     f"{env.control_dt * 1000:.0f} ms", spec.description, terms))
        env.close()
    header = ("task", "obs", "critic_obs", "actions", "control", "description")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)))
        if args.verbose:
            print(f"    policy obs terms: {row[-1]}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    sys.stdout.write(config.to_yaml())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robolearn", description="Sim-to-real robot learning: batched MuJoCo tasks, PPO, ADR, export.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a policy (PPO) from an experiment config")
    p.add_argument("config", help="experiment YAML file, e.g. configs/nav.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.num_envs=64 runner.max_iterations=100")
    p.add_argument("--run-dir", type=Path, help="run directory (default runs/<experiment>/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR|CHECKPOINT", help="continue a run from its last (or this) checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained policy on complete episodes")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--episodes", type=_positive_int, default=100)
    p.add_argument("--num-envs", type=_positive_int, help="parallel envs (default min(episodes, 64))")
    p.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                   help="act with the policy mean (default)")
    p.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions")
    p.add_argument("--seed", type=int, help="layout seed (default: the training seed + 10000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--video", metavar="PATH.mp4", help="render env 0 offscreen to this MP4")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("envs", help="list registered tasks with their observation and action sizes")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the policy observation terms")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("config", help="print the resolved config (file + KEY=VALUE overrides) as YAML")
    p.add_argument("config", help="experiment YAML file, e.g. configs/nav.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.num_envs=64 algorithm.lr=3e-4")
    p.set_defaults(func=_cmd_config)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    # robots and training servers have no display: render offscreen with EGL unless the user chose
    # (MuJoCo reads MUJOCO_GL when it is first imported)
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"robolearn: config error: {err}", file=sys.stderr)
        return 2
    except CommandError as err:
        print(f"robolearn: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("robolearn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
