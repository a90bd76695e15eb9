"""``robolearn`` commands around an exported policy: export, deploy-bench, sim2sim, obs-report.

    robolearn export RUN_DIR|CHECKPOINT [--out DIR] [--formats onnx,torchscript]
    robolearn deploy-bench EXPORT_DIR [--calls N] [--rate HZ]   PolicyRunner.step latency, batch 1
    robolearn sim2sim EXPORT_DIR [--variants FILE]  the exported policy under other simulations
    robolearn obs-report EXPORT_DIR LOG.npz         recorded observations against the training distribution

:mod:`robolearn.cli` builds the parser (:func:`add_deploy_commands` adds these) and runs them; a
:class:`~robolearn.cli.CommandError` is one line and exit code 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robolearn.cli import CommandError, positive_int


def _cmd_obs_report(args: argparse.Namespace) -> int:
    """Exit 1 when a term looks unlike training."""
    from robolearn.deploy import ContractError
    from robolearn.deploy.obs_report import ObsLogError, format_report, obs_report, plot_report

    try:
        report = obs_report(args.export_dir, args.log, **({"sigma": args.sigma} if args.sigma else {}))
    except (ContractError, ObsLogError) as err:
        raise CommandError(str(err)) from None
    png = args.png or Path(args.log).with_suffix(".png")
    plot_report(report, png)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        print(f"wrote {png}")
    return 1 if report["suspect_terms"] else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from robolearn.checkpoint import CheckpointError
    from robolearn.deploy.export import ExportError, check_formats, default_out_dir, export_checkpoint
    from robolearn.files import FileWriteError, check_writable_dir

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        check_formats(formats)
        out_dir = args.out or default_out_dir(args.checkpoint)
        check_writable_dir(out_dir, "the export")  # before the checkpoint, the env and the parity check
        export = export_checkpoint(args.checkpoint, out_dir, formats)
    except (CheckpointError, ExportError, FileWriteError) as err:
        raise CommandError(str(err)) from None
    parity = export.contract["parity"]
    figures = ", ".join(f"{name} {diff:.2g}" for name, diff in parity["max_abs_diff"].items())
    print(f"parity over {parity['steps']} steps x {parity['envs']} envs: max abs action difference to eager torch "
          f"{figures} (tolerance {parity['tolerance']:g}): ok")
    for path in export.files:
        print(f"wrote {path}")
    return 0


def _cmd_deploy_bench(args: argparse.Namespace) -> int:
    from robolearn.deploy import ContractError, PolicyFileError
    from robolearn.deploy.latency import measure_latency, measure_latency_at_rate

    try:
        if args.rate:
            results = measure_latency_at_rate(args.export_dir, args.rate, args.ticks, args.lead_ms / 1000.0, args.cpu,
                                              health=not args.no_health)
        else:
            results = measure_latency(args.export_dir, args.calls, health=not args.no_health)
    except (ContractError, PolicyFileError) as err:
        raise CommandError(str(err)) from None
    except OSError as err:  # sched_setaffinity: a core this process may not use
        raise CommandError(f"--cpu {args.cpu}: cannot pin to that core ({err.strerror or err})") from None
    if args.json:
        print(json.dumps(results))
        return 0
    if args.rate:
        print(f"{args.export_dir}: PolicyRunner.step at {args.rate:g} Hz, batch 1, 1 thread, {args.ticks} ticks per "
              f"mode, lead {args.lead_ms:g} ms" + (f", pinned to CPU {args.cpu}" if args.cpu is not None else ""))
    else:
        print(f"{args.export_dir}: batch 1, 1 thread, {args.calls} calls")
    print(f"{'':20s}{'p50 us':>10s}{'p99 us':>10s}{'max us':>10s}")
    for name, row in results.items():
        print(f"{name:20s}{row['p50_us']:10.1f}{row['p99_us']:10.1f}{row['max_us']:10.1f}")
    return 0


def _cmd_sim2sim(args: argparse.Namespace) -> int:
    """Exit 1 when a variant loses more success than the threshold."""
    from robolearn.deploy import ContractError, PolicyFileError
    from robolearn.deploy.sim2sim import load_variants, policy_config, run_sim2sim, write_outputs

    if not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold: a share of success in [0, 1], got {args.threshold}")
    config = policy_config(args.export_dir, args.config)
    variants = load_variants(args.variants)
    try:
        result = run_sim2sim(args.export_dir, config, variants, conditions=[] if args.no_conditions else None,
                             episodes=args.episodes, num_envs=args.num_envs, seed=args.seed, threshold=args.threshold)
    except (ContractError, PolicyFileError) as err:
        raise CommandError(str(err)) from None
    out = args.out or (Path(args.export_dir) if Path(args.export_dir).is_dir() else Path(args.export_dir).parent)
    files = write_outputs(result, out)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.format())
        for path in files:
            print(f"wrote {path}")
    return 1 if result.flagged else 0


def add_deploy_commands(sub) -> None:
    """The deployment commands' parsers, added to ``robolearn``'s subcommands."""
    p = sub.add_parser("obs-report", help="compare observations recorded on a robot (or by eval --record) with "
                       "the training distribution in an exported policy's contract")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="export directory (policy.json)")
    p.add_argument("log", metavar="LOG.npz", help="obs (steps, obs_dim) in contract order, or one array per term")
    p.add_argument("--sigma", type=float, help="standard deviations beyond which (and beyond the training range) "
                   "a value is out of distribution (default: PolicyRunner's, 4)")
    p.add_argument("--png", type=Path, help="distribution plot (default LOG.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_obs_report)

    p = sub.add_parser("export", help="export a policy to ONNX + TorchScript with its contract, parity-checked")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--out", type=Path, metavar="DIR", help="output directory (default RUN_DIR/export)")
    p.add_argument("--formats", default="onnx,torchscript", help="comma-separated: onnx, torchscript (default both)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("deploy-bench", help="latency of an exported policy through PolicyRunner (batch 1, 1 thread)")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="export directory or its policy.onnx")
    p.add_argument("--calls", type=positive_int, default=10_000, help="timed calls (default 10000)")
    p.add_argument("--rate", type=float, metavar="HZ", help="time step() at this control rate instead of a hot "
                   "loop: sleep, sleep+warm, sleep+spin, sleep+warm+spin before each tick")
    p.add_argument("--ticks", type=positive_int, default=200, help="--rate: ticks per wait mode (default 200)")
    p.add_argument("--lead-ms", type=float, default=1.0, help="--rate: warm / spin this long before the tick (default 1)")
    p.add_argument("--cpu", type=int, help="--rate: pin the process to this core (e.g. an isolated one)")
    p.add_argument("--no-health", action="store_true", help="PolicyRunner without its observation health check")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_deploy_bench)

    p = sub.add_parser("sim2sim", help="run an exported policy (PolicyRunner) under simulations it did not train in: "
                       "integrators, timesteps, solver, contacts, jitter, latency, held-out conditions")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="export directory (policy.onnx + policy.json)")
    p.add_argument("--config", help="the experiment config (default: the config.yaml of the run the contract names)")
    p.add_argument("--variants", metavar="FILE.yaml", help="variants extending (or, replace: true, replacing) the "
                   "defaults")
    p.add_argument("--episodes", type=positive_int, default=128, help="episodes per variant (default 128)")
    p.add_argument("--num-envs", type=positive_int, default=64, help="parallel envs (default 64)")
    p.add_argument("--seed", type=int, help="layout seed (default: the training seed + 20000)")
    p.add_argument("--threshold", type=float, default=0.1,
                   help="mark variants losing more success than this (default 0.1: 10 points)")
    p.add_argument("--no-conditions", action="store_true", help="skip the held-out conditions files (configs/eval)")
    p.add_argument("--out", type=Path, metavar="DIR", help="where sim2sim.json and sim2sim.png go (default EXPORT_DIR)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_sim2sim)
