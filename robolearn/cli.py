"""``robolearn`` command line.

    robolearn train CONFIG [KEY=VALUE ...] [--run-dir DIR] [--resume RUN_DIR|CHECKPOINT] [--nproc K]
    torchrun --nproc_per_node=K -m robolearn train CONFIG ...   (the same as --nproc K; multi-node too)
    robolearn eval RUN_DIR|CHECKPOINT [--episodes N] [--num-envs N] [--json] [--video out.mp4 [--camera NAME]]
                   [--record LOG.npz]
    robolearn envs                                  registered tasks with obs / action sizes
    robolearn config CONFIG [KEY=VALUE ...]         print the resolved, validated config
    robolearn export RUN_DIR|CHECKPOINT [--out DIR] [--formats onnx,torchscript]
    robolearn deploy-bench EXPORT_DIR [--calls N] [--rate HZ]   PolicyRunner.step latency, batch 1
    robolearn sim2sim EXPORT_DIR [--variants FILE]  the exported policy under other simulations
    robolearn obs-report EXPORT_DIR LOG.npz         recorded observations against the training distribution
    (export, deploy-bench, sim2sim and obs-report live in :mod:`robolearn.cli_deploy`)
    robolearn robot check SPEC_OR_CONFIG [KEY=VALUE ...] [--image robot.png] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from robolearn.config import ConfigError, load_config


class CommandError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 1."""


#: set by ``train --nproc`` for its torchrun workers: rank 0 writes its exit code there, because
#: torchrun itself exits 1 for any failed worker
EXIT_CODE_FILE = "ROBOLEARN_EXIT_CODE_FILE"


def _load_config(path: str | Path, overrides: Sequence[str]):
    import robolearn.envs  # noqa: F401  (registers the tasks, whose config classes validate env sections)

    return load_config(path, overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from robolearn.checkpoint import CheckpointError
    from robolearn.distributed import Distributed, DistributedError, RanksDiverged, launched_by_torchrun
    from robolearn.run_dir import RunDirError, default_run_dir
    from robolearn.trainer import Trainer, TrainingDiverged

    config = _load_config(args.config, args.overrides)
    if args.nproc is not None:
        if launched_by_torchrun():
            raise CommandError("--nproc: this process is already a torchrun worker (drop --nproc, or run "
                               "robolearn train ... --nproc K without torchrun)")
        if args.nproc > 1:
            return _launch_torchrun(args, config)
    try:
        dist = Distributed.from_env(config.device, config.trainer.dist_backend)
    except DistributedError as err:
        raise CommandError(str(err)) from None
    try:
        with _config_errors_name_their_source(config):
            if args.resume:
                trainer = Trainer.from_checkpoint(args.resume, config=config, run_dir=args.run_dir, dist=dist)
            else:
                trainer = Trainer(config, args.run_dir or default_run_dir(config.experiment), dist=dist,
                                  unique_run_dir=args.run_dir is None)
        trainer.learn()
    except (CheckpointError, RanksDiverged, RunDirError) as err:  # every rank raises these together: rank 0 reports
        if dist.is_main:
            print(f"robolearn: {err}", file=sys.stderr)
        return 1
    except TrainingDiverged as err:
        if dist.is_main:
            print(f"robolearn: {err}", file=sys.stderr)
        return 3
    finally:
        dist.shutdown()
    return 0


@contextlib.contextmanager
def _config_errors_name_their_source(config):
    """A config error found while building the run (a randomization selection naming a body the
    model lacks, ...) names its dotted key; prefix the file or override that set it."""
    try:
        yield
    except ConfigError as err:
        message = str(err)
        raise ConfigError(f"{config.origin(message.split(':', 1)[0])}: {message}") from None


def _launch_torchrun(args: argparse.Namespace, config) -> int:
    """``train --nproc K``: check what can be checked once, then run K ranks on this machine with
    ``torchrun --standalone`` and return rank 0's exit code."""
    import tempfile

    import torch

    from robolearn.distributed import DistributedError, choose_backend, cpu_count, resolve_device, torchrun_command
    from robolearn.run_dir import RunDirError, default_run_dir, reserve_run_dir

    try:
        device = resolve_device(config.device)
        backend = choose_backend(config.trainer.dist_backend, device)
    except DistributedError as err:
        raise CommandError(str(err)) from None
    if backend == "nccl" and torch.cuda.device_count() < args.nproc:
        raise CommandError(f"--nproc {args.nproc}: nccl needs one GPU per rank, this machine has "
                           f"{torch.cuda.device_count()} (lower --nproc, or trainer.dist_backend=gloo)")
    argv = ["train", str(args.config), *args.overrides]
    if args.resume:
        argv += ["--resume", str(args.resume)]
    run_dir = args.run_dir
    if run_dir is None and not args.resume:  # one new directory for all ranks; rank 0 claims it
        try:
            run_dir = reserve_run_dir(default_run_dir(config.experiment))
        except RunDirError as err:
            raise CommandError(str(err)) from None
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    env = dict(os.environ)
    if device.type == "cpu":  # torchrun would set 1; give each rank its share of the cores
        env.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // args.nproc)))
    with tempfile.TemporaryDirectory(prefix="robolearn-launch-") as tmp:
        exit_file = Path(tmp) / "rank0_exit_code"
        env[EXIT_CODE_FILE] = str(exit_file)
        process = subprocess.Popen(torchrun_command(args.nproc, argv), env=env)
        # Ctrl-C: torchrun passes it on to the workers (in their own sessions), which save and stop
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            code = process.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        rank0 = exit_file.read_text().strip() if exit_file.exists() else ""
    if rank0.lstrip("-").isdigit():
        return int(rank0)  # torchrun reports 1 for any failure (or for a Ctrl-C): give rank 0's own code
    return code


def _cmd_eval(args: argparse.Namespace) -> int:
    from robolearn.checkpoint import CheckpointError, load_policy
    from robolearn.envs import make_env
    from robolearn.evaluation import VideoError, eval_randomization, run_episodes
    from robolearn.files import FileWriteError

    if args.camera is not None and not args.video:
        raise CommandError("--camera: names the camera of --video; add --video PATH.mp4")
    try:
        policy, config, state = load_policy(args.checkpoint, average=not args.last_iterate)
    except CheckpointError as err:
        raise CommandError(str(err)) from None
    num_envs = args.num_envs or min(args.episodes, 64)
    env_config = config.env.model_copy(update={"num_envs": num_envs})
    seed = args.seed if args.seed is not None else config.seed + 10_000  # layouts unseen in training
    randomization = eval_randomization(args.randomization, config, state)
    try:
        env = make_env(env_config, seed=seed, randomization=randomization)
    except ConfigError as err:  # a ranges file naming what the model lacks: name the file
        where = args.randomization if args.randomization not in ("nominal", "train") else state["path"]
        raise ConfigError(f"{where}: {err}") from None
    weights = "average" if state.get("policy_average") and not args.last_iterate else "last"
    if args.policy:
        policy = _exported_policy(args, env, config.env.task)
        weights = (policy.contract.get("source") or {}).get("weights")  # the exported weights (None: not recorded)
    try:
        result = run_episodes(policy, env, args.episodes, deterministic=args.deterministic, video=args.video,
                              video_camera=args.camera, record=args.record)
    except (VideoError, FileWriteError) as err:
        raise CommandError(str(err)) from None
    result = {"checkpoint": state["path"], "iteration": state["iteration"], "task": config.env.task,
              "deterministic": args.deterministic, "seed": seed, "randomization": args.randomization,
              "weights": weights, **result}
    if args.policy:
        result["policy"] = str(args.policy)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{config.env.task}  checkpoint {state['path']} (iteration {state['iteration']})")
        if args.policy:
            print(f"policy: {args.policy} (ONNX Runtime through PolicyRunner)")
        print(f"episodes {result['episodes']}  success {result['success_rate']:.1%}  return {result['return_mean']:.3f}"
              f"  length {result['episode_len']:.1f}"
              + "".join(f"  {k[:-5]} {v:.3f}" for k, v in result.items() if k.endswith("_mean") and k != "return_mean"))
        if args.video:
            print(f"video: {args.video} ({result['video_frames']} frames)")
        if args.record:
            print(f"observations: {args.record} ({result['recorded_steps']} steps)")
    return 0


def _exported_policy(args: argparse.Namespace, env, task: str):
    """``eval --policy``: act through the exported policy, one PolicyRunner per env."""
    from robolearn.deploy import ContractError, PolicyFileError
    from robolearn.deploy.closed_loop import RunnerPolicy

    if not args.deterministic:
        raise CommandError("--policy: an exported policy acts with its mean; --stochastic does not apply")
    if args.last_iterate:
        raise CommandError("--policy: an exported policy acts with the weights it was exported with; "
                           "--last-iterate does not apply")
    try:
        return RunnerPolicy(args.policy, env, task)
    except (ContractError, PolicyFileError) as err:
        raise CommandError(str(err)) from None


def _cmd_envs(args: argparse.Namespace) -> int:
    from robolearn.envs.registry import list_tasks

    rows = []
    for spec in list_tasks():
        config = spec.config_cls(num_envs=1, nthread=1)
        env = spec.env_cls(config=config)
        obs = {group: layout.size for group, layout in env.obs_layout.items()}
        shapes = env.obs_layout["policy"].shapes
        terms = ", ".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in shapes.items())
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
    config = _load_config(args.config, args.overrides)
    sys.stdout.write(config.to_yaml())
    return 0


def _cmd_robot_check(args: argparse.Namespace) -> int:
    """A robot spec YAML is checked in the bundled task it fits; an experiment config in its task."""
    import yaml

    import robolearn.envs  # noqa: F401
    from robolearn.config import env_config_class
    from robolearn.envs.robots.check import check_env_config, task_for_robot
    from robolearn.envs.robots.spec import load_robot_spec

    path = Path(args.target)
    if not path.is_file():
        raise CommandError(f"{path}: no such robot spec or experiment config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CommandError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if isinstance(data, dict) and "env" in data:
        env_config = _load_config(path, args.overrides).env
    else:
        if args.overrides:
            raise CommandError("KEY=VALUE overrides apply to experiment configs, not to a robot spec")
        robot = load_robot_spec(path)
        task = task_for_robot(robot)
        env_config = env_config_class(task).model_validate({"task": task, "robot": robot.model_dump()})
    report = check_env_config(env_config, envs=args.envs, image=args.image)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.format())
        if args.image:
            print(f"image: {args.image}")
    return 1 if report.problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robolearn", description="Sim-to-real robot learning: batched MuJoCo tasks, PPO, ADR, export.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a policy (PPO) from an experiment config")
    p.add_argument("config", help="experiment YAML file, e.g. configs/nav.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.num_envs=64 trainer.max_iterations=100")
    p.add_argument("--run-dir", type=Path, help="run directory (default runs/<experiment>/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR|CHECKPOINT", help="continue a run from its last (or this) checkpoint")
    p.add_argument("--nproc", type=positive_int, metavar="K",
                   help="train with K ranks on this machine (launches torchrun; each rank steps env.num_envs envs)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained policy on complete episodes")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--episodes", type=positive_int, default=100)
    p.add_argument("--num-envs", type=positive_int, help="parallel envs (default min(episodes, 64))")
    p.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                   help="act with the policy mean (default)")
    p.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions")
    p.add_argument("--seed", type=int, help="layout seed (default: the training seed + 10000)")
    p.add_argument("--last-iterate", action="store_true", help="the last iteration's weights, not the run's "
                   "moving average of them (trainer.policy_average)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--video", metavar="PATH.mp4", help="render env 0 offscreen to this MP4")
    p.add_argument("--camera", metavar="NAME", help="the video's camera, any camera of the task's model (default: "
                   "the task's own view)")
    p.add_argument("--randomization", metavar="RANGES", default="nominal",
                   help="nominal (default), train (the checkpoint's ADR ranges) or a YAML file of fixed ranges")
    p.add_argument("--policy", metavar="EXPORT_DIR/policy.onnx",
                   help="act through this exported policy (ONNX Runtime, PolicyRunner) instead of torch")
    p.add_argument("--record", metavar="LOG.npz", help="write the policy observations of the episodes here "
                   "(the log robolearn obs-report reads)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("envs", help="list registered tasks with their observation and action sizes")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the policy observation terms")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("robot", help="robot tools: robot check SPEC_OR_CONFIG")
    robot = p.add_subparsers(dest="robot_command", metavar="ROBOT_COMMAND", required=True)
    p = robot.add_parser("check", help="check a robot spec (or an experiment config's robot) before training: "
                         "joints, gains, masses, workspace, task regions, a scripted grasp, stability")
    p.add_argument("target", metavar="SPEC_OR_CONFIG", help="robot spec YAML, or an experiment config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of an experiment config")
    p.add_argument("--image", metavar="PATH.png", help="render the composed scene offscreen to this PNG")
    p.add_argument("--envs", type=positive_int, default=16, help="envs for the stability check (default 16)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_robot_check)

    p = sub.add_parser("config", help="print the resolved config (file + KEY=VALUE overrides) as YAML")
    p.add_argument("config", help="experiment YAML file, e.g. configs/nav.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.num_envs=64 algorithm.lr=3e-4")
    p.set_defaults(func=_cmd_config)

    from robolearn.cli_deploy import add_deploy_commands

    add_deploy_commands(sub)
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    # robots and training servers have no display: render offscreen with EGL unless the user chose
    # (MuJoCo reads MUJOCO_GL when it is first imported)
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides after an option (train CONFIG --nproc 2 KEY=VALUE) belong to the overrides
        if not hasattr(args, "overrides") or any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    code = _run(args)
    exit_file = os.environ.get(EXIT_CODE_FILE)
    if exit_file and os.environ.get("RANK", "0") == "0":  # a worker of train --nproc: tell the launcher
        Path(exit_file).write_text(str(code))
    distributed = sys.modules.get("robolearn.distributed")
    if distributed is not None and distributed.joined_process_group:
        distributed.exit_worker(code)  # a torchrun worker: see exit_worker for why
    return code


def _run(args: argparse.Namespace) -> int:
    from robolearn.envs.robots.spec import RobotSpecError

    try:
        return args.func(args)
    except ConfigError as err:
        print(f"robolearn: config error: {err}", file=sys.stderr)
        return 2
    except RobotSpecError as err:  # a robot spec that does not fit its file or its task
        print(f"robolearn: robot error: {err}", file=sys.stderr)
        return 2
    except CommandError as err:
        print(f"robolearn: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("robolearn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
