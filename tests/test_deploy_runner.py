"""PolicyRunner: torch-free loading, contract checks, step semantics, safety, latency CLI, example loop."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from policies import RecurrentActor, mlp_policy
from robolearn.deploy import ContractError, PolicyFileError, PolicyRunner
from robolearn.deploy.closed_loop import check_contract_matches_env
from robolearn.deploy.contract import METADATA_KEY, dumps
from robolearn.deploy.export import export_policy
from robolearn.deploy.integrity import append_metadata, graph_sha256

ROOT = Path(__file__).resolve().parents[1]
TASK = "robolearn/Nav-v0"
SCALE = 12.0  # Nav-v0's action scale (max wheel speed), offset 0


@pytest.fixture(scope="module")
def mlp(env, tmp_path_factory):
    policy, out = mlp_policy(), tmp_path_factory.mktemp("mlp")
    export_policy(policy, env, out, task=TASK, formats=["onnx"])
    return policy, out


@pytest.fixture(scope="module")
def lstm(env, tmp_path_factory):
    policy, out = RecurrentActor("lstm", hidden_size=32, layers=2), tmp_path_factory.mktemp("lstm")
    export_policy(policy, env, out, task=TASK, formats=["onnx"])
    return policy, out


def observations(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, (count, 23)).astype(np.float32)


def expected_command(actions: torch.Tensor) -> np.ndarray:
    return np.clip(actions.numpy()[0], -1.0, 1.0) * SCALE


def test_step_applies_scale_and_clipping_to_the_eager_action(mlp):
    policy, out = mlp
    runner = PolicyRunner(out)
    assert (runner.obs_dim, runner.action_dim, runner.recurrent) == (23, 2, None)
    assert runner.session.get_session_options().intra_op_num_threads == 1
    clipped = 0
    for obs in observations(50):
        command = runner.step(obs)
        assert command.dtype == np.float32 and command.shape == (2,) and not command.flags.writeable
        with torch.no_grad():
            actions = policy(torch.from_numpy(obs[None]))
        clipped += int((actions.abs() > 1).any())
        np.testing.assert_allclose(command, expected_command(actions), atol=1e-5 * SCALE)
    assert 0 < clipped < 50  # both clipped and unclipped actions were checked


def test_recurrent_state_is_carried_and_reset(lstm):
    policy, out = lstm
    runner = PolicyRunner(out / "policy.onnx")
    assert runner.contract["inputs"] == ["obs", "h_in", "c_in"]
    sequence = observations(8, seed=1)
    for _ in range(2):  # the second pass, after reset(), repeats the first exactly
        state = (torch.zeros(2, 1, 32), torch.zeros(2, 1, 32))
        for obs in sequence:
            with torch.no_grad():
                actions, *state = policy(torch.from_numpy(obs[None]), *state)
            np.testing.assert_allclose(runner.step(obs), expected_command(actions), atol=1e-5 * SCALE)
        runner.reset()
    with torch.no_grad():
        stateless = policy(torch.from_numpy(sequence[-1:]), torch.zeros(2, 1, 32), torch.zeros(2, 1, 32))[0]
    assert np.abs(expected_command(actions) - expected_command(stateless)).max() > 1e-3


def test_wrong_observation_shape_or_dtype_is_rejected(mlp):
    runner = PolicyRunner(mlp[1])
    expected = "obs: expected a float32 array of shape (23,), got "
    for bad, got in ((np.zeros(23), "float64 array of shape (23,)"),
                     (np.zeros(22, np.float32), "float32 array of shape (22,)"),
                     (np.zeros((1, 23), np.float32), "float32 array of shape (1, 23)"),
                     ([0.0] * 23, "list")):
        with pytest.raises(ValueError) as err:
            runner.step(bad)
        assert str(err.value) == expected + got


def test_nonfinite_observation_gives_the_safe_action_and_keeps_the_state(lstm):
    policy, out = lstm
    sequence = observations(3, seed=2)
    zeros, hold, reference = PolicyRunner(out), PolicyRunner(out, safe_action="hold"), PolicyRunner(out)
    for runner in (zeros, hold, reference):
        first = runner.step(sequence[0]).copy()
    bad = sequence[1].copy()
    bad[4] = np.nan
    np.testing.assert_array_equal(zeros.step(bad), [0.0, 0.0])
    np.testing.assert_array_equal(hold.step(bad), first)
    bad[4] = np.inf
    np.testing.assert_array_equal(zeros.step(bad), [0.0, 0.0])
    assert (zeros.nonfinite_obs, hold.nonfinite_obs, zeros.nonfinite_output) == (2, 1, 0)
    # the skipped ticks left the recurrent state alone
    np.testing.assert_array_equal(zeros.step(sequence[2]), reference.step(sequence[2]))
    with pytest.raises(ValueError, match="safe_action: expected one of zeros, hold, got 'brake'"):
        PolicyRunner(out, safe_action="brake")


def write_policy(path: Path, graph: onnx.GraphProto, contract: dict | str | None) -> Path:
    """Save ``graph`` as an ONNX model with ``contract`` embedded: a dict gets the graph's hash
    (as the exporter records it), text is embedded as it is, None embeds nothing."""
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10).SerializeToString()
    if isinstance(contract, dict):
        contract = dumps({**contract, "sha256": {"onnx_graph": graph_sha256(data, str(path))}})
    path.write_bytes(data if contract is None else append_metadata(data, METADATA_KEY, contract))
    return path


def sqrt_graph() -> onnx.GraphProto:
    """actions = sqrt(obs @ ones): finite observations, NaN actions when their sum is negative."""
    ones = helper.make_tensor("ones", TensorProto.FLOAT, [23, 2], np.ones(46, np.float32))
    nodes = [helper.make_node("MatMul", ["obs", "ones"], ["sum"]), helper.make_node("Sqrt", ["sum"], ["actions"])]
    return helper.make_graph(nodes, "sqrt", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 23])],
                             [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["batch", 2])], [ones])


def test_nonfinite_output_gives_the_safe_action(mlp, tmp_path):
    contract = PolicyRunner(mlp[1]).contract
    path = write_policy(tmp_path / "policy.onnx", sqrt_graph(), contract)
    zeros, hold = PolicyRunner(path), PolicyRunner(path, safe_action="hold")
    for runner in (zeros, hold):
        np.testing.assert_array_equal(runner.step(np.full(23, 0.5, np.float32)), [SCALE, SCALE])
    np.testing.assert_array_equal(zeros.step(np.full(23, -1.0, np.float32)), [0.0, 0.0])
    np.testing.assert_array_equal(hold.step(np.full(23, -1.0, np.float32)), [SCALE, SCALE])
    assert (zeros.nonfinite_output, hold.nonfinite_output, zeros.nonfinite_obs) == (1, 1, 0)


def test_missing_or_invalid_contract_is_a_clear_error(mlp, tmp_path):
    contract = PolicyRunner(mlp[1]).contract
    path = tmp_path / "policy.onnx"
    with pytest.raises(ContractError, match=f"^{path}: no contract in the ONNX metadata \\(key 'robolearn.contract'\\)"):
        PolicyRunner(write_policy(path, sqrt_graph(), None))
    with pytest.raises(ContractError, match=f"^{path}: contract is not valid JSON"):
        PolicyRunner(write_policy(path, sqrt_graph(), "{not json"))
    bad = json.loads(json.dumps(contract))
    bad["action"]["scale"] = [12.0]
    with pytest.raises(ContractError, match=f"^{path}: contract key 'action.scale': expected 2 entries, got 1$"):
        PolicyRunner(write_policy(path, sqrt_graph(), bad))
    bad = json.loads(json.dumps(contract))
    del bad["control_period_s"]
    with pytest.raises(ContractError, match="contract key 'control_period_s': expected a positive number"):
        PolicyRunner(write_policy(path, sqrt_graph(), bad))
    bad = json.loads(json.dumps(contract))  # a recurrent contract on a feed-forward graph
    bad.update(recurrent={"cell": "gru", "layers": 1, "hidden_size": 8, "state_shape": ["layers", "batch", "hidden_size"]},
               inputs=["obs", "h_in"], outputs=["actions", "h_out"])
    with pytest.raises(ContractError, match=r"contract key 'inputs': contract names \['obs', 'h_in'\], the graph has \['obs'\]"):
        PolicyRunner(write_policy(path, sqrt_graph(), bad))


def test_missing_or_corrupted_policy_file_is_a_clear_error(mlp, tmp_path):
    with pytest.raises(PolicyFileError, match=f"^{tmp_path}/policy.onnx: no such file"):
        PolicyRunner(tmp_path)
    data = (mlp[1] / "policy.onnx").read_bytes()
    for corrupted in (data[: len(data) // 2], b"\x00garbage" * 10):
        (tmp_path / "policy.onnx").write_bytes(corrupted)
        with pytest.raises(PolicyFileError, match=f"^{tmp_path}/policy.onnx: not a loadable ONNX model \\("):
            PolicyRunner(tmp_path)


def test_runner_imports_and_runs_without_torch(lstm):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from robolearn.deploy import PolicyRunner\n"
            f"runner = PolicyRunner({str(lstm[1])!r})\n"
            "print(runner.step(np.zeros(23, np.float32)).shape)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'mujoco', 'pydantic', 'yaml')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["(2,)", "[]"]


def test_contract_must_match_the_simulated_env(mlp, env):
    contract = PolicyRunner(mlp[1]).contract
    check_contract_matches_env(contract, env, TASK, "policy.onnx")
    with pytest.raises(ContractError, match="policy.onnx: contract key 'task' is robolearn/Nav-v0, the simulated env has other/Task-v0"):
        check_contract_matches_env(contract, env, "other/Task-v0", "policy.onnx")
    changed = {**contract, "action": {**contract["action"], "scale": [6.0, 6.0]}}
    with pytest.raises(ContractError, match="contract key 'action.scale' is \\[6.0, 6.0\\], the simulated env has \\[12.0, 12.0\\]"):
        check_contract_matches_env(changed, env, TASK, "policy.onnx")


def test_deploy_bench_cli(lstm):
    out = subprocess.run([sys.executable, "-m", "robolearn", "deploy-bench", str(lstm[1]), "--calls", "300", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert set(results) == {"PolicyRunner.step", "onnxruntime.run"}
    for row in results.values():
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]


def test_control_loop_example_runs_without_torch(mlp):
    code = ("import runpy, sys; sys.modules['torch'] = None\n"
            f"sys.argv = ['control_loop.py', {str(mlp[1])!r}, '--seconds', '0.5', '--rate-hz', '100']\n"
            "runpy.run_path('deploy/examples/control_loop.py', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("50 ticks at 100 Hz (10 ms): ") and "deadline misses" in out.stdout


def copy_export(src: Path, dst: Path) -> Path:
    for name in ("policy.onnx", "policy.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_an_untouched_export_loads_with_or_without_its_policy_json(mlp, tmp_path):
    out = copy_export(mlp[1], tmp_path)
    contract = PolicyRunner(out).contract
    assert contract == json.loads((out / "policy.json").read_text())
    assert dict(PolicyRunner(out).fixed_commands) == contract["action"]["fixed"] == {}
    (out / "policy.json").unlink()  # the contract file is optional on the robot
    assert PolicyRunner(out).contract == contract


def test_a_changed_weight_is_refused_naming_both_hashes(mlp, tmp_path):
    out = copy_export(mlp[1], tmp_path)
    data = bytearray((out / "policy.onnx").read_bytes())
    weights = max(onnx.load(out / "policy.onnx").graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    offset = bytes(data).find(weights)
    assert offset > 0 and bytes(data).count(weights) == 1
    data[offset + 1] ^= 0x01  # one low mantissa bit of the first weight; the metadata is untouched
    (out / "policy.onnx").write_bytes(bytes(data))
    import onnxruntime  # without the check the edited graph loads and runs
    onnxruntime.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])

    recorded = json.loads((out / "policy.json").read_text())["sha256"]["onnx_graph"]
    actual = graph_sha256(bytes(data), "x")
    assert actual != recorded
    with pytest.raises(ContractError) as err:
        PolicyRunner(out)
    assert str(err.value) == (f"{out / 'policy.onnx'}: contract key 'sha256.onnx_graph' is {recorded}, the graph in "
                              f"the file hashes to {actual}: the model was changed after export (re-export it)")


def test_an_edited_policy_json_is_refused_naming_the_first_differing_key(mlp, tmp_path):
    out = copy_export(mlp[1], tmp_path)
    contract = json.loads((out / "policy.json").read_text())
    edited = json.loads(json.dumps(contract))
    edited["action"]["scale"][1] = 6.0
    edited["control_period_s"] = 0.02
    (out / "policy.json").write_text(dumps(edited))
    with pytest.raises(ContractError) as err:
        PolicyRunner(out)
    assert str(err.value) == (f"{out / 'policy.json'}: contract key 'action.scale[1]' differs from the contract "
                              "embedded in policy.onnx (6.0 vs 12.0); re-export, or remove the file")
    del edited["action"]["scale"]
    (out / "policy.json").write_text(dumps(edited))
    with pytest.raises(ContractError, match=r"contract key 'action.scale' differs .* \(<missing> vs \[12.0, 12.0\]\)"):
        PolicyRunner(out)
    (out / "policy.json").write_text("{truncated")
    with pytest.raises(ContractError, match=f"^{out / 'policy.json'}: unreadable contract file beside policy.onnx"):
        PolicyRunner(out)


def test_an_old_format_says_to_re_export(mlp, tmp_path):
    contract = {**PolicyRunner(mlp[1]).contract, "format": "robolearn.policy/1"}
    path = write_policy(tmp_path / "policy.onnx", sqrt_graph(), contract)
    with pytest.raises(ContractError) as err:
        PolicyRunner(path)
    assert str(err.value) == (f"{path}: contract key 'format': 'robolearn.policy/1' is not this runner's "
                              "'robolearn.policy/2': re-export the policy with this version (robolearn export RUN_DIR)")


def test_fixed_commands_are_exposed_and_validated(mlp, tmp_path):
    contract = PolicyRunner(mlp[1]).contract
    path = tmp_path / "policy.onnx"
    fixed = {"gripper_finger_travel_m": 0.0, "lamp_on": 1}
    runner = PolicyRunner(write_policy(path, sqrt_graph(), {**contract, "action": {**contract["action"], "fixed": fixed}}))
    assert dict(runner.fixed_commands) == {"gripper_finger_travel_m": 0.0, "lamp_on": 1.0}
    with pytest.raises(TypeError):
        runner.fixed_commands["lamp_on"] = 0.0  # read-only
    for bad, problem in (({"wheel_l_velocity_rad_s": 0.0}, "'action.fixed.wheel_l_velocity_rad_s': is also a policy output"),
                         ({"gripper_finger_travel_m": float("nan")}, "'action.fixed.gripper_finger_travel_m': expected a finite number, got nan"),
                         ({"gripper_finger_travel_m": True}, "expected a finite number, got True"),
                         ([0.0], "'action.fixed': expected an object, got [0.0]")):
        with pytest.raises(ContractError) as err:
            PolicyRunner(write_policy(path, sqrt_graph(), {**contract, "action": {**contract["action"], "fixed": bad}}))
        assert problem in str(err.value) and str(err.value).startswith(f"{path}: contract key ")
    del contract["action"]["fixed"]
    with pytest.raises(ContractError, match="contract key 'action.fixed': missing"):
        PolicyRunner(write_policy(path, sqrt_graph(), contract))


def test_a_second_graph_or_contract_appended_to_the_file_is_refused(mlp, tmp_path):
    data = (mlp[1] / "policy.onnx").read_bytes()
    second = onnx.ModelProto()  # a graph field holding one unused weight: protobuf merges it into the graph
    second.graph.initializer.append(helper.make_tensor("extra", TensorProto.FLOAT, [1], [1.0]))
    (tmp_path / "policy.onnx").write_bytes(data + second.SerializeToString())
    with pytest.raises(ContractError) as err:
        PolicyRunner(tmp_path)
    assert str(err.value) == f"{tmp_path / 'policy.onnx'}: expected one ONNX graph in the file, found 2 graph fields"
    contract = PolicyRunner(mlp[1]).contract
    twice = append_metadata(data, METADATA_KEY, dumps({**contract, "action": {**contract["action"], "scale": [6.0, 6.0]}}))
    (tmp_path / "policy.onnx").write_bytes(twice)
    with pytest.raises(ContractError, match=f"^{tmp_path / 'policy.onnx'}: the ONNX metadata holds key 'robolearn.contract' twice$"):
        PolicyRunner(tmp_path)
