"""Time to train: env steps and wall-clock to 50 % and to 90 % success, per task, on this machine.

For each task the bundled config trains for its budget (``--minutes`` overrides it) with a
checkpoint every ``--checkpoints``-th of the budget; afterwards (outside the timed run) every
checkpoint is evaluated on held-out layouts (deterministic actions, ``--episodes`` complete
episodes, seed 12345) and read against the run's ``metrics.csv`` (wall-clock and env steps at that
iteration). Prints a markdown table (task | best success | steps and minutes to 50 % | to 90 %),
writes it to ``OUT/time_to_train.md`` with the raw points (``.json``) and a PNG of success
against wall-clock for every task.

    python bench/time_to_train.py nav navpo reach push pickplace mobilepick [--minutes M] [--out DIR]
    python bench/time_to_train.py configs/fetch_reach.yaml      # any experiment config
    python bench/time_to_train.py --runs runs/mobile_pick/<stamp> ...   # evaluate finished runs only

Each point also keeps the behaviour metrics the task reports (``bumps``, ``max_carry_height``,
``thrown_or_dropped``, ...: their episode means), written to the JSON.

Runs one task after the other; run it alone (on 2 cores a figure taken beside another job is void).
The peer is the same script's table from an earlier commit: the README keeps the last one.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import robolearn.envs  # noqa: F401  (registers the tasks)
from robolearn.checkpoint import load_policy
from robolearn.config import load_config
from robolearn.envs import make_env
from robolearn.evaluation import run_episodes
from robolearn.logger import ProgressDisplay
from robolearn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED = 12345
TASKS = {"nav": "nav.yaml", "navpo": "nav_po_lstm.yaml", "navdepth": "nav_depth.yaml", "reach": "reach.yaml",
         "push": "push.yaml", "pickplace": "pickplace.yaml", "mobilepick": "mobile_pick.yaml",
         "fetch_reach": "fetch_reach.yaml", "fetch_pickplace": "fetch_pickplace.yaml"}
LEVELS = (0.5, 0.9)
#: episode metrics kept beside success (the behaviour a robot may show), where the task reports them
BEHAVIOUR = ("bumps", "collisions", "max_carry_height", "thrown_or_dropped", "drops", "spl")


def config_path(task: str) -> Path:
    return ROOT / "configs" / TASKS[task] if task in TASKS else Path(task)


def train(task: str, out: Path, minutes: float | None, checkpoints: int) -> tuple[Path, float]:
    """Train ``task`` into ``out/<name>``; the run directory and its budget in seconds."""
    overrides = ["device=cpu"]
    config = load_config(config_path(task), overrides)
    budget = minutes * 60.0 if minutes else config.trainer.max_seconds
    if budget is None:
        raise SystemExit(f"{task}: the config has no max_seconds; pass --minutes")
    overrides += [f"trainer.max_seconds={budget}", "trainer.max_env_steps=null", "trainer.max_iterations=null"]
    config = load_config(config_path(task), overrides)
    # checkpoint spacing: the budget's iterations (from a 3-iteration probe of the speed) / checkpoints
    run_dir = out / Path(task).stem
    probe = Trainer(load_config(config_path(task), [*overrides[:1], "trainer.max_iterations=3",
                                                     "trainer.max_seconds=null", "trainer.max_env_steps=null"]),
                    out / f"{Path(task).stem}_probe", progress=ProgressDisplay(log_interval=1000))
    probe.learn()
    per_iteration = probe_seconds(out / f"{Path(task).stem}_probe") / 3
    interval = max(1, int(budget / per_iteration / checkpoints))
    config = load_config(config_path(task), [*overrides, f"trainer.checkpoint_interval={interval}"])
    Trainer(config, run_dir, progress=ProgressDisplay(log_interval=50)).learn()
    return run_dir, budget


def probe_seconds(run_dir: Path) -> float:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return float(rows[-1]["wall_s"])


def evaluate(run_dir: Path, episodes: int) -> list[dict[str, float]]:
    """Success of every checkpoint on held-out layouts, with the wall-clock and steps it took."""
    metrics = {int(row["iteration"]): row for row in csv.DictReader((run_dir / "metrics.csv").open())}
    points = []
    for checkpoint in sorted((run_dir / "checkpoints").glob("model_*.pt")):
        policy, config, state = load_policy(checkpoint)
        env = make_env(config.env.model_copy(update={"num_envs": min(episodes, 64)}), seed=EVAL_SEED)
        result = run_episodes(policy, env, episodes)
        env.close()
        row = metrics[state["iteration"]]
        behaviour = {k[:-len("_mean")]: v for k, v in result.items() if k[:-len("_mean")] in BEHAVIOUR}
        points.append({"iteration": state["iteration"], "env_steps": int(row["env_steps"]),
                       "wall_s": float(row["wall_s"]), "success": result["success_rate"], **behaviour})
        print(f"{run_dir.name} it {state['iteration']:5d} {float(row['wall_s']) / 60:5.1f} min: success "
              f"{result['success_rate']:.1%} " + " ".join(f"{k} {v:.3f}" for k, v in behaviour.items()), flush=True)
    return points


def first_reaching(points: list[dict[str, float]], level: float) -> dict[str, float] | None:
    return next((p for p in points if p["success"] >= level), None)


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| task | best success (at min) | to 50 %: env steps, min | to 90 %: env steps, min |",
             "|---|---|---|---|"]
    for task, points in results.items():
        best = max(points, key=lambda p: p["success"])
        cells = []
        for level in LEVELS:
            hit = first_reaching(points, level)
            cells.append(f"{hit['env_steps'] / 1e6:.2f} M, {hit['wall_s'] / 60:.1f}" if hit else "not reached")
        lines.append(f"| {task} | {best['success']:.1%} ({best['wall_s'] / 60:.1f}) | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict[str, float]]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for task, points in results.items():
        ax.plot([p["wall_s"] / 60 for p in points], [100 * p["success"] for p in points], marker="o", ms=3, label=task)
    for level in LEVELS:
        ax.axhline(100 * level, color="gray", lw=0.6, ls="--")
    ax.set_xlabel("wall-clock, minutes (2 cores)")
    ax.set_ylabel("success % (held-out layouts)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tasks", nargs="+", help=f"{', '.join(TASKS)} or experiment config paths (with --runs: "
                        "run directories to evaluate, no training)")
    parser.add_argument("--runs", action="store_true", help="the arguments are finished runs' directories")
    parser.add_argument("--minutes", type=float, help="training budget per task (default: the config's max_seconds)")
    parser.add_argument("--checkpoints", type=int, default=20, help="checkpoints over the budget (default 20)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per checkpoint (default 100)")
    parser.add_argument("--out", type=Path, default=Path("runs/time_to_train"))
    args = parser.parse_args()

    results = {}
    for task in args.tasks:
        run_dir = Path(task) if args.runs else train(task, args.out, args.minutes, args.checkpoints)[0]
        results[run_dir.name if args.runs else Path(task).stem] = evaluate(run_dir, args.episodes)
        print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "time_to_train.md").write_text(table(results) + "\n")
    (args.out / "time_to_train.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "time_to_train.png")
    print(f"wrote {args.out}/time_to_train.md, .json, .png")


if __name__ == "__main__":
    main()
