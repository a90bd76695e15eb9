"""CLI smoke tests: help, task listing, config dump and one-line config errors."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def robolearn(*args):
    return subprocess.run([sys.executable, "-m", "robolearn", *args], capture_output=True, text=True, cwd=ROOT)


def test_help_and_envs():
    out = robolearn("--help")
    assert out.returncode == 0 and "envs" in out.stdout
    out = robolearn("envs")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("robolearn/Nav-v0"))
    assert row.split()[1:4] == ["23", "29", "2"]


def test_config_dump_and_errors():
    out = robolearn("config", "configs/nav.yaml", "env.num_envs=64", "algorithm.lr=3e-4")
    assert out.returncode == 0 and "num_envs: 64" in out.stdout and "lr: 0.0003" in out.stdout
    out = robolearn("config", "configs/nav.yaml", "env.num_envz=64")
    assert out.returncode == 2
    assert out.stderr.strip() == ("robolearn: config error: override 'env.num_envz=64': env.num_envz: unknown key "
                                  "(did you mean num_envs?)")
