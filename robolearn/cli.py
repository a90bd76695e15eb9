"""``robolearn`` command line.

    robolearn envs                                  registered tasks with obs / action sizes
    robolearn config CONFIG [KEY=VALUE ...]         print the resolved, validated config
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from robolearn.config import ConfigError, load_config


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

    p = sub.add_parser("envs", help="list registered tasks with their observation and action sizes")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the policy observation terms")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("config", help="print the resolved config (file + KEY=VALUE overrides) as YAML")
    p.add_argument("config", help="experiment YAML file, e.g. configs/nav.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.num_envs=64 algorithm.lr=3e-4")
    p.set_defaults(func=_cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"robolearn: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
