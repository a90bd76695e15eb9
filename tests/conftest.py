import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

import robolearn.envs  # noqa: E402,F401  (registers the bundled tasks, whose config classes validate env sections)


@pytest.fixture(scope="module")
def env():
    """Four Nav-v0 envs on one physics thread, shared by a test module (export and deploy tests)."""
    from robolearn.envs import make_env
    from robolearn.envs.diffdrive import NavConfig

    env = make_env(NavConfig(num_envs=4, nthread=1), seed=0)
    yield env
    env.close()
