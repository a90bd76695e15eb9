"""The distribution installs one import package, ``robolearn``, with its subpackages and MJCF assets."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_install_target_has_only_robolearn(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, cwd=tmp_path, capture_output=True)
    top = sorted(p.name for p in target.iterdir() if p.name not in ("bin", "__pycache__"))
    assert top[0] == "robolearn" and len(top) == 2 and top[1].startswith("robolearn-") \
        and top[1].endswith(".dist-info"), top
    pkg = target / "robolearn"
    # every package of the source tree is installed (robolearn/x -> robolearn/x, envs/x -> robolearn/envs/x, ...)
    sources = {ROOT / "robolearn": pkg, ROOT / "envs": pkg / "envs", ROOT / "randomization": pkg / "randomization",
               ROOT / "deploy": pkg / "deploy"}
    for source, installed in sources.items():
        for init in source.rglob("__init__.py"):
            relative = init.parent.relative_to(source)
            assert (installed / relative / "__init__.py").is_file(), f"{init.parent} is not installed"
    assert (pkg / "envs" / "diffdrive" / "nav_arena.xml").is_file()
    # the installed copy imports and builds the task from its packaged asset
    code = ("import robolearn.envs.diffdrive.nav as nav, robolearn; assert robolearn.__file__.startswith(%r); "
            "env = nav.NavEnv(num_envs=2); print(env.reset(seed=0)[0]['policy'].shape)") % str(target)
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(target), "MUJOCO_GL": "egl"},
                         cwd=tmp_path, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "(2, 23)"


def test_no_top_level_imports_of_subpackages():
    for path in list((ROOT / "robolearn").rglob("*.py")) + [p for d in ("envs", "randomization", "deploy", "tests", "bench")
                                                             for p in (ROOT / d).rglob("*.py")]:
        for line in path.read_text().splitlines():
            stripped = line.strip()
            for pkg in ("envs", "deploy", "randomization"):
                assert not stripped.startswith((f"import {pkg}", f"from {pkg} ", f"from {pkg}.")), f"{path}: {line}"
