"""Robots as data: spec validation errors, MJCF and URDF robots composed into every task they fit
(``check_env`` on the single-env views), observation and action sizes following the robot, the
reach check, ``robolearn robot check``, and the Fetch arm from gymnasium-robotics (scripted grasp,
export with its joint names) when that optional extra is installed."""

import importlib.util
import json

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robolearn.cli import main
from robolearn.config import ConfigError, load_config
from robolearn.envs.arm import PickPlaceConfig, PickPlaceEnv, PushEnv, ReachEnv
from robolearn.envs.diffdrive import NavEnv, NavPOEnv
from robolearn.envs.mobile import MobilePickEnv
from robolearn.envs.robots import RobotSpec, RobotSpecError, compose, resolve_robot_ref, robot_mjspec, scene_mjspec
from robolearn.envs.robots.check import check_env_config, scripted_grasp
from robolearn.envs.robots.spec import load_robot_spec

HAS_FETCH = importlib.util.find_spec("gymnasium_robotics") is not None
needs_fetch = pytest.mark.skipif(not HAS_FETCH, reason="the Fetch model comes with the optional extra "
                                 "gymnasium-robotics (pip install -e \".[robots]\")")
FETCH_JOINTS = ["robot0:shoulder_pan_joint", "robot0:shoulder_lift_joint", "robot0:upperarm_roll_joint",
                "robot0:elbow_flex_joint", "robot0:forearm_roll_joint", "robot0:wrist_flex_joint",
                "robot0:wrist_roll_joint"]


def spec(bundled: str, **changes) -> dict:
    """A bundled robot's spec as a mapping, with top-level or nested (``arm__joints``) changes."""
    data = resolve_robot_ref(bundled)
    for key, value in changes.items():
        *path, last = key.split("__")
        node = data
        for part in path:
            node = node[part]
        node[last] = value
    return data


def four_joint_arm() -> dict:
    """The bundled arm with its wrist roll welded at 0.3 rad: an MJCF robot with 4 arm joints."""
    data = spec("arm5", name="arm4", freeze={"j5_roll": 0.3})
    arm = data["arm"]
    arm["joints"], arm["actuators"], arm["home"] = arm["joints"][:4], arm["actuators"][:4], arm["home"][:4]
    return data


# ---------------------------------------------------------------------------------------------
# spec validation: one line naming the key, the name and the closest names in the file


@pytest.mark.parametrize("change, key, names", [
    ({"arm__joints": ["j1_pan", "j2_shouldr", "j3_elbow", "j4_wrist", "j5_roll"]}, "robot.arm.joints", "j2_shoulder"),
    ({"arm__ee_site": "tool"}, "robot.arm.ee_site", "closest:"),
    ({"gripper__grasp_geoms": ["finger_l", "fingr_r"]}, "robot.gripper.grasp_geoms", "finger_r"),
    ({"arm__actuators": ["j1_pan", "j2_shoulder", "j3_elbow", "j4_wrist", "gripper"]}, "robot.arm.actuators",
     "drives 'finger_l'"),
    ({"freeze": {"j9": 0.0}}, "robot.freeze.j9", "closest:"),
    ({"collision": {"geoms": ["palm", "paw*"]}}, "robot.collision.geoms", "closest:"),
    ({"mount": {"site": "arm_mnt"}}, "robot.mount.site", "arm_mount"),
])
def test_a_spec_naming_what_the_file_lacks_is_one_line_with_the_closest_names(change, key, names):
    with pytest.raises(RobotSpecError) as err:
        ReachEnv(num_envs=1, nthread=1, robot=spec("arm5", **change))
    message = str(err.value)
    assert "\n" not in message and key in message and names in message


@pytest.mark.parametrize("change, message", [
    ({"arm__home": [0.0, 0.5]}, "home has 2 values for 5 joints"),
    ({"arm__drive": {"kp": 100.0}}, "give either actuators"),
    ({"gripper__open": [0.04]}, "open has 1 values for 2 joints"),
    ({"arm__ee_body": "hand"}, "give either ee_site or ee_body"),
    ({"arm__drive": None, "arm__actuators": None}, "give either actuators"),
])
def test_inconsistent_specs_are_config_errors_naming_the_key(change, message, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps({"env": {"task": "robolearn/Reach-v0", "robot": spec("arm5", **change)},
                                "trainer": {"max_iterations": 1}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, [])
    assert "env.robot" in str(err.value) and message in str(err.value)


def test_unknown_robot_names_the_bundled_ones_and_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown robot 'kobuky'.*kobuki"):
        load_config_text(tmp_path, {"task": "robolearn/Nav-v0", "robot": "kobuky"})
    with pytest.raises(ConfigError, match="no_such.yaml does not exist"):
        load_config_text(tmp_path, {"task": "robolearn/Nav-v0", "robot": str(tmp_path / "no_such.yaml")})
    with pytest.raises(ConfigError, match="robot 'arm5' has no 'base' section"):
        load_config_text(tmp_path, {"task": "robolearn/Nav-v0", "robot": "arm5"})


def load_config_text(tmp_path, env: dict):
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps({"env": env, "trainer": {"max_iterations": 1}}))
    return load_config(path, [])


def test_a_urdf_whose_mesh_is_missing_names_the_file(tmp_path):
    urdf = tmp_path / "bot.urdf"
    urdf.write_text("""<robot name="bot"><link name="base"><inertial><mass value="1"/>
      <inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
      <collision><geometry><mesh filename="meshes/chassis.stl"/></geometry></collision></link></robot>""")
    robot = RobotSpec.model_validate({"name": "bot", "file": str(urdf)})
    with pytest.raises(RobotSpecError) as err:
        robot_mjspec(robot)
    assert "chassis.stl" in str(err.value) and "\n" not in str(err.value)


def test_a_model_file_or_package_that_is_not_there_is_one_line(tmp_path, capsys):
    for ref, message in ((str(tmp_path / "gone.xml"), "gone.xml does not exist"),
                         ("package://no_such_package/robot.xml", "package 'no_such_package' is not installed")):
        with pytest.raises(RobotSpecError, match=message):
            NavEnv(num_envs=1, nthread=1, robot=spec("kobuki", file=ref))
    exp = tmp_path / "exp.yaml"
    robot = spec("kobuki", file=str(tmp_path / "x.urdf"))
    exp.write_text(json.dumps({"env": {"task": "robolearn/Nav-v0", "robot": robot}, "trainer": {"max_iterations": 1}}))
    assert main(["train", str(exp), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "robot error" in err and "x.urdf does not exist" in err and len(err.strip().splitlines()) == 1


def test_a_spec_file_is_loaded_relative_to_itself_and_bad_keys_are_named(tmp_path):
    (tmp_path / "robots").mkdir()
    path = tmp_path / "robots" / "bot.yaml"
    path.write_text("name: bot\nfile: ../bot.urdf\nbase: {wheels: [a, b], wheel_radius: -1, track_width: 0.2, "
                    "body: base, drive: {kv: 1.0}}\n")
    with pytest.raises(RobotSpecError, match=r"bot.yaml: base.wheel_radius: Input should be greater than 0"):
        load_robot_spec(path)
    path.write_text("name: bot\nfile: ../bot.urdf\n")
    assert load_robot_spec(path).file == str(tmp_path / "bot.urdf")


# ---------------------------------------------------------------------------------------------
# robots compose into every task they fit


def test_the_urdf_base_drives_nav_and_navpo():
    for cls in (NavEnv, NavPOEnv):
        env = cls(num_envs=2, nthread=1, seed=0, robot="kobuki", max_wheel_speed=17.0,
                  obstacles={"count": [0, 0]})
        assert env.action_names == ["wheel_left_joint_velocity_rad_s", "wheel_right_joint_velocity_rad_s"]
        assert env.base.rest_height == pytest.approx(0.0, abs=1e-6)  # base_link on the floor
        assert env.base.footprint == pytest.approx(0.176 + 0.0055, abs=2e-3)  # chassis + bounding margin
        env.reset(seed=0)
        b = env.base.qpos
        env.qpos[:, b:b + 2] = [[-2.0, 0.0], [-2.0, 1.0]]  # 5 m of free floor ahead (+x)
        env.qpos[:, b + 3:b + 7] = [1, 0, 0, 0]
        env.batch.forward()
        for _ in range(20):
            env.step(np.ones((2, 2)))  # full speed ahead
        start = env.qpos[:, b].copy()
        for _ in range(40):
            obs, reward, *_ = env.step(np.ones((2, 2)))
        speed = (env.qpos[:, b] - start) / (40 * env.control_dt)
        np.testing.assert_allclose(speed, 17.0 * 0.035, rtol=0.12)  # wheel speed x wheel radius
        assert np.all(np.abs(env.qpos[:, b + 2]) < 0.01)  # still on the floor, not tipped or bouncing
        assert np.isfinite(obs["critic"]).all()
    for task in ("robolearn/Nav-v0", "robolearn/NavPO-v0"):
        single = gymnasium.make(task, robot="kobuki", disable_env_checker=True)
        check_env(single.unwrapped, skip_render_check=True)


def test_the_urdf_bumper_counts_a_wall_hit_and_not_the_floor():
    env = NavEnv(num_envs=1, nthread=1, seed=0, robot="kobuki", max_wheel_speed=17.0, episode_seconds=60.0)
    env.reset(seed=0)
    for _ in range(10):
        env.step(np.zeros((1, 2)))
    assert env.sensordata[0, env.base.bumper] == 0.0  # resting on its wheels and casters
    b = env.base.qpos
    env.qpos[0, b:b + 2] = [2.6, 0.0]  # facing the east wall, 0.22 m from it
    env.qpos[0, b + 3:b + 7] = [1, 0, 0, 0]
    env.batch.forward([0])
    for _ in range(30):
        env.step(np.ones((1, 2)))
    assert env.collisions[0] >= 1


@pytest.mark.parametrize("env_cls", [ReachEnv, PushEnv, PickPlaceEnv])
def test_an_arm_with_four_joints_drives_every_arm_task_with_four_joint_terms(env_cls):
    env = env_cls(num_envs=2, nthread=1, seed=0, robot=four_joint_arm())
    widths = env.obs_layout["policy"].widths
    assert widths["joint_pos"] == widths["joint_vel"] == 4
    names = ["j1_pan_delta_rad", "j2_shoulder_delta_rad", "j3_elbow_delta_rad", "j4_wrist_delta_rad"]
    assert env.action_names[:4] == names and len(env.action_names) == 4 + env.gripper_action
    assert "j5_roll" not in [env.model.joint(j).name for j in range(env.model.njnt)]  # welded
    env.reset(seed=0)
    for _ in range(5):
        obs, reward, *_ = env.step(np.random.default_rng(0).uniform(-1, 1, (2, len(env.action_names))))
    assert np.isfinite(obs["policy"]).all() and np.isfinite(reward).all()
    task = {ReachEnv: "robolearn/Reach-v0", PushEnv: "robolearn/Push-v0", PickPlaceEnv: "robolearn/PickPlace-v0"}
    single = gymnasium.make(task[env_cls], robot=four_joint_arm(), disable_env_checker=True)
    check_env(single.unwrapped, skip_render_check=True)


def test_a_frozen_hinge_keeps_the_pose_it_was_frozen_at():
    welded = PickPlaceEnv(num_envs=1, nthread=1, robot=four_joint_arm())
    free = PickPlaceEnv(num_envs=1, nthread=1)
    for env, roll in ((welded, None), (free, 0.3)):
        data = env.batch.get_data(0)
        data.qpos[env.arm.qpos[:4]] = [0.2, 0.4, 1.2, 0.6]
        if roll is not None:
            data.qpos[env.arm.qpos[4]] = roll
        import mujoco

        mujoco.mj_kinematics(env.model, data)
        env._ee = data.site("ee").xpos.copy(), data.site("ee").xmat.copy()
    np.testing.assert_allclose(welded._ee[0], free._ee[0], atol=1e-9)
    np.testing.assert_allclose(welded._ee[1], free._ee[1], atol=1e-9)


def test_mobile_pick_needs_a_base_with_the_arms_mount_site():
    with pytest.raises(RobotSpecError, match="robot.mount.site: no site named 'arm_mount'"):
        MobilePickEnv(num_envs=1, nthread=1, base="kobuki")
    env = MobilePickEnv(num_envs=1, nthread=1, robot=four_joint_arm())
    assert env.obs_layout["policy"].widths["joint_pos"] == 4
    assert env.action_names[:2] == ["wheel_l_velocity_rad_s", "wheel_r_velocity_rad_s"]
    single = gymnasium.make("robolearn/MobilePick-v0", robot=four_joint_arm(), disable_env_checker=True)
    check_env(single.unwrapped, skip_render_check=True)


def test_task_regions_out_of_reach_fail_at_env_construction():
    far = {"x": [0.9, 1.2], "y": [-0.1, 0.1], "z": [0.05, 0.1]}
    with pytest.raises(RobotSpecError, match=r"env.target_region: the point .* is out of reach of robot 'arm5'"):
        ReachEnv(num_envs=1, nthread=1, target_region=far)


def test_names_repeated_by_two_robots_ask_for_a_prefix():
    scene = scene_mjspec("robolearn.envs.mobile", "mobile_arena.xml")
    arm = RobotSpec.model_validate(resolve_robot_ref("arm5"))
    with pytest.raises(RobotSpecError, match="set robot.prefix"):
        compose(scene, [RobotSpec.model_validate(resolve_robot_ref("diffdrive_large")), arm,
                        arm.model_copy(update={"mount": arm.mount.model_copy(update={"site": "arm_mount"})})],
                "mobile_arena.xml")


# ---------------------------------------------------------------------------------------------
# robolearn robot check


def test_robot_check_reports_the_urdf_base(tmp_path, capsys):
    from pathlib import Path

    import robolearn.envs.robots as robots

    path = Path(robots.__file__).parent / "kobuki.yaml"
    assert main(["robot", "check", str(path), "--json", "--envs", "4"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "robolearn/Nav-v0" and not report["problems"]
    assert [j["name"] for j in report["joints"]] == ["wheel_left_joint", "wheel_right_joint"]
    assert report["stability"]["ok"] and report["base"]["wheel_radius"] == 0.035


def test_robot_check_of_the_bundled_arm_grasps_and_reaches(tmp_path, capsys):
    config = PickPlaceConfig(num_envs=4, nthread=1)
    report = check_env_config(config, envs=4, image=str(tmp_path / "arm.png"))
    assert report.grasp["ok"] and report.grasp["lift"] > 0.08, report.grasp
    assert all(r["reachable"] == 1.0 for r in report.workspace["regions"].values())
    assert report.stability["ok"] and not report.problems
    assert [j["name"] for j in report.joints][:5] == ["j1_pan", "j2_shoulder", "j3_elbow", "j4_wrist", "j5_roll"]
    assert (tmp_path / "arm.png").stat().st_size > 1000
    text = report.format()
    assert "scripted grasp: ok" in text and "no problems found" in text


def test_robot_check_names_a_region_out_of_reach(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(json.dumps({"env": {"task": "robolearn/Reach-v0"}, "trainer": {"max_iterations": 1}}))
    far = "env.target_region={x: [0.9, 1.2], y: [-0.1, 0.1], z: [0.05, 0.1]}"
    code = main(["robot", "check", str(exp), far])
    err = capsys.readouterr().err
    assert code == 2 and "robot error: env.target_region" in err and len(err.strip().splitlines()) == 1
    # training says so before its first iteration, and leaves no run behind
    code = main(["train", str(exp), far, "env.num_envs=2", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "robot error: env.target_region" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------
# Fetch (gymnasium-robotics)


@needs_fetch
@pytest.mark.parametrize("task", ["robolearn/Reach-v0", "robolearn/Push-v0", "robolearn/PickPlace-v0"])
def test_fetch_drives_every_arm_task_with_seven_joint_terms(task):
    regions = {"object_region": {"x": [0.65, 0.85], "y": [-0.15, 0.15]},
               "target_region": {"x": [0.65, 0.85], "y": [-0.15, 0.15], "z": [0.0 if "Push" in task else 0.05, 0.0
                                                                               if "Push" in task else 0.25]}}
    if task == "robolearn/Reach-v0":
        del regions["object_region"]
    env = gymnasium.make(task, robot="fetch", disable_env_checker=True, **regions)
    check_env(env.unwrapped, skip_render_check=True)
    batched = env.unwrapped.vector_env
    assert batched.obs_layout["policy"].widths["joint_pos"] == 7
    assert batched.action_names[:7] == [f"{j}_delta_rad" for j in FETCH_JOINTS]
    # only the gripper collides (the spec's collision section); the rest of the meshes are visual
    model = batched.model
    colliding = {model.geom(g).name for g in range(model.ngeom) if model.geom_contype[g] and model.geom_group[g] == 2}
    assert colliding == {"robot0:gripper_link", "robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link"}


@needs_fetch
def test_fetch_gripper_grasps_and_lifts_the_cube_scripted():
    result = scripted_grasp(PickPlaceEnv, load_config_fetch().env)
    assert result["ok"] and result["lift"] > 0.08 and result["force"] > 1.0, result


def load_config_fetch():
    from pathlib import Path

    return load_config(Path(__file__).resolve().parents[1] / "configs" / "fetch_pickplace.yaml", [])


@needs_fetch
def test_a_fetch_policy_exports_with_the_fetch_joint_names(tmp_path, capsys):
    from pathlib import Path

    from robolearn.deploy import PolicyRunner

    config = Path(__file__).resolve().parents[1] / "configs" / "fetch_reach.yaml"
    run = tmp_path / "run"
    tiny = ["device=cpu", "env.num_envs=4", "env.nthread=1", "trainer.max_iterations=1", "trainer.num_steps=8",
            "policy.actor_hidden=[8]", "policy.critic_hidden=[8]"]
    assert main(["train", str(config), *tiny, "--run-dir", str(run)]) == 0, capsys.readouterr().err
    assert main(["export", str(run)]) == 0, capsys.readouterr().err
    runner = PolicyRunner(run / "export")
    names = runner.contract["action"]["names"]
    assert names == [f"{j}_delta_rad" for j in FETCH_JOINTS] + ["gripper_open_fraction"]
    command = runner.step(np.zeros(runner.contract["obs"]["dim"], np.float32))
    assert command.shape == (8,) and np.isfinite(command).all()


def test_an_end_effector_given_as_a_body_and_offset_is_a_site_there():
    from_body = spec("arm5", arm__ee_site=None, arm__ee_body="hand", arm__ee_offset=[0.0, 0.0, 0.08])
    with_body, with_site = ReachEnv(num_envs=1, nthread=1, robot=from_body), ReachEnv(num_envs=1, nthread=1)
    for env in (with_body, with_site):
        env.reset(seed=0)
    np.testing.assert_allclose(with_body.ee_pos, with_site.ee_pos, atol=1e-12)  # arm5's ee site: hand + 8 cm


@pytest.mark.parametrize("name", ["urdf_nav", pytest.param("fetch_reach", marks=needs_fetch),
                                  pytest.param("fetch_pickplace", marks=needs_fetch)])
def test_robot_configs_build_their_env_with_adr(name):
    from pathlib import Path

    from robolearn.envs import make_env

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml",
                         ["env.num_envs=4", "env.nthread=1"])
    env = make_env(config.env, seed=0, randomization=config.randomization)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, reward, *_ = env.step(np.zeros((4, env.single_action_space.shape[0])))
    assert np.isfinite(obs["critic"]).all() and np.isfinite(reward).all()
