"""Export: policy.onnx + policy.pt + policy.json behind the parity gate (MLP, LSTM, GRU), and the CLI."""

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx.external_data_helper import uses_external_data

from policies import RecurrentActor, make_policy, mlp_policy
from robolearn.deploy.contract import METADATA_KEY, validate
from robolearn.deploy.export import ExportError, ParityError, export_policy
from robolearn.deploy.integrity import GRAPH_FIELD, fields, graph_sha256
from robolearn.models import DeployableMLP

ROOT = Path(__file__).resolve().parents[1]
TASK = "robolearn/Nav-v0"
SOURCE = {"run": "runs/test", "checkpoint": "runs/test/checkpoints/last.pt", "iteration": 7}
# policy.pt is TorchScript, which torch deprecates (it is still what LibTorch controllers load)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def mlp(env, tmp_path_factory):
    policy = mlp_policy()
    out = tmp_path_factory.mktemp("mlp")
    return policy, out, export_policy(policy, env, out, task=TASK, source=SOURCE)


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_mlp_export_is_one_opset18_file_with_dynamic_batch_and_the_normaliser(mlp):
    policy, out, export = mlp
    assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.onnx", "policy.pt"]
    assert all(diff <= 1e-5 for diff in export.contract["parity"]["max_abs_diff"].values())
    assert set(export.contract["parity"]["max_abs_diff"]) == {"onnxruntime", "torchscript"}
    model = onnx.load(out / "policy.onnx", load_external_data=False)
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    assert [(i.name, dims(i)) for i in model.graph.input] == [("obs", ["batch", 23])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [("actions", ["batch", 2])]

    session = onnxruntime.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(out / "policy.pt")
    assert [a.name for a in scripted.forward.schema.arguments] == ["self", "obs"]
    obs = np.random.default_rng(0).normal(0.0, 3.0, (7, 23)).astype(np.float32)
    with torch.no_grad():
        eager = policy(torch.from_numpy(obs)).numpy()
        without_normaliser = policy.actor(torch.from_numpy(obs)).numpy()
        np.testing.assert_allclose(scripted(torch.from_numpy(obs)).numpy(), eager, atol=1e-5)
    for batch in (1, 7):  # raw observations in, normalised inside the graph
        np.testing.assert_allclose(session.run(None, {"obs": obs[:batch]})[0], eager[:batch], atol=1e-5)
    assert np.abs(without_normaliser - eager).max() > 1e-2


def test_contract_round_trip(mlp):
    _, out, export = mlp
    text = (out / "policy.json").read_text()
    model = onnx.load(out / "policy.onnx")
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata[METADATA_KEY] == text
    contract = json.loads(text)
    assert contract == export.contract == validate(json.loads(metadata[METADATA_KEY]), "policy.onnx")
    assert contract["task"] == TASK and contract["source"] == SOURCE
    assert contract["obs"]["dim"] == 23
    assert [(t["name"], t["width"]) for t in contract["obs"]["terms"]] == [
        ("goal", 3), ("velocity", 2), ("lidar", 16), ("last_action", 2)]
    assert contract["action"]["names"] == ["wheel_l_velocity_rad_s", "wheel_r_velocity_rad_s"]
    assert contract["action"]["scale"] == [12.0, 12.0] and contract["action"]["offset"] == [0.0, 0.0]
    assert contract["action"]["fixed"] == {}
    assert contract["control_period_s"] == 0.05
    assert contract["recurrent"] is None
    assert (contract["inputs"], contract["outputs"]) == (["obs"], ["actions"])
    assert contract["exporter"]["opset"] == 18 and contract["exporter"]["torch"] == torch.__version__
    data = (out / "policy.onnx").read_bytes()
    assert contract["sha256"] == {"onnx_graph": graph_sha256(data, "policy.onnx"),
                                  "policy.pt": hashlib.sha256((out / "policy.pt").read_bytes()).hexdigest()}
    # the hashed bytes are the stored graph field: they parse to the model's graph, weights included
    (graph_field,) = [f for f in fields(data, "policy.onnx") if f.number == GRAPH_FIELD]
    graph_bytes = data[graph_field.start:graph_field.end]
    assert hashlib.sha256(graph_bytes).hexdigest() == contract["sha256"]["onnx_graph"]
    assert onnx.GraphProto.FromString(graph_bytes) == model.graph and len(model.graph.initializer) > 0
    assert METADATA_KEY.encode() not in graph_bytes


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_export_carries_state_explicitly(env, tmp_path, cell):
    policy = RecurrentActor(cell, hidden_size=32, layers=2)
    export = export_policy(policy, env, tmp_path, task=TASK)
    contract = export.contract
    parity = contract["parity"]["max_abs_diff"]
    assert parity["onnxruntime"] <= 1e-5 and parity["torchscript"] <= 1e-5
    states = ["h", "c"] if cell == "lstm" else ["h"]
    assert contract["inputs"] == ["obs", *(f"{s}_in" for s in states)]
    assert contract["outputs"] == ["actions", *(f"{s}_out" for s in states)]
    assert contract["recurrent"] == {"cell": cell, "layers": 2, "hidden_size": 32,
                                     "state_shape": ["layers", "batch", "hidden_size"]}
    model = onnx.load(tmp_path / "policy.onnx")
    assert [dims(i) for i in model.graph.input] == [["batch", 23]] + [[2, "batch", 32]] * len(states)
    assert [dims(o) for o in model.graph.output] == [["batch", 2]] + [[2, "batch", 32]] * len(states)
    scripted = torch.jit.load(tmp_path / "policy.pt")
    assert [a.name for a in scripted.forward.schema.arguments][1:] == contract["inputs"]

    # carried state over a few steps at batch 1: ONNX Runtime and TorchScript follow eager torch
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    eager_state = ort_state = ts_state = [np.zeros((2, 1, 32), np.float32)] * len(states)
    with torch.no_grad():
        for _ in range(5):
            obs = rng.normal(0.0, 2.0, (1, 23)).astype(np.float32)
            eager, *eager_state = [t.numpy() for t in policy(torch.from_numpy(obs), *map(torch.from_numpy, eager_state))]
            ort, *ort_state = session.run(None, dict(zip(contract["inputs"], [obs, *ort_state])))
            ts, *ts_state = [t.numpy() for t in scripted(torch.from_numpy(obs), *map(torch.from_numpy, ts_state))]
            np.testing.assert_allclose(ort, eager, atol=1e-5)
            np.testing.assert_allclose(ts, eager, atol=1e-5)
    assert np.abs(eager_state[0]).max() > 1e-3  # the state really moved


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_actor_critic_exports_its_actor(env, tmp_path, cell):
    torch.manual_seed(0)
    model = make_policy({"policy": 23, "critic": 29}, 2, cell, rnn_hidden=16, rnn_layers=2, encoder_hidden=[16],
                        actor_hidden=[16], critic_obs="critic")
    model.obs_normalizers["policy"].mean.normal_()
    policy = model.deployable_actor()
    assert (policy.obs_dim, policy.action_dim, policy.recurrent) == (23, 2, {"cell": cell, "layers": 2, "hidden_size": 16})
    contract = export_policy(model, env, tmp_path, task=TASK).contract  # parity against the policy interface
    assert all(diff <= 1e-5 for diff in contract["parity"]["max_abs_diff"].values())
    graph = onnx.load(tmp_path / "policy.onnx").graph
    assert not any("critic" in t.name for t in graph.initializer)  # the actor alone is deployed
    obs, state = np.ones((1, 23), np.float32), [np.zeros((2, 1, 16), np.float32)] * (2 if cell == "lstm" else 1)
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        eager = model.actor_step(torch.from_numpy(obs), *map(torch.from_numpy, state))
    for ort, ref in zip(session.run(None, dict(zip(contract["inputs"], [obs, *state]))), eager):
        np.testing.assert_allclose(ort, ref.numpy(), atol=1e-5)


class ExportsDifferently(DeployableMLP):
    """Acts differently once traced or exported: what the parity gate exists to catch."""

    def forward(self, obs):
        actions = super().forward(obs)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            actions = actions + 1e-3
        return actions


def test_broken_export_fails_the_gate_and_writes_nothing(env, tmp_path):
    good = mlp_policy()
    broken = ExportsDifferently(good.normalizer, good.actor)
    out = tmp_path / "export"
    with pytest.raises(ParityError) as err:
        export_policy(broken, env, out, task=TASK)
    assert not out.exists()
    figures = err.value.parity["max_abs_diff"]
    assert figures["onnxruntime"] == pytest.approx(1e-3, rel=1e-2) and figures["torchscript"] == pytest.approx(1e-3, rel=1e-2)
    message = str(err.value)
    assert "onnxruntime 0.001" in message and "tolerance 1e-05" in message and "nothing written" in message


def test_onnx_only_export_removes_a_stale_torchscript_file(env, tmp_path):
    (tmp_path / "policy.pt").write_bytes(b"stale")
    export = export_policy(mlp_policy(hidden=(16,)), env, tmp_path, task=TASK, formats=["onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx"]
    assert list(export.contract["parity"]["max_abs_diff"]) == ["onnxruntime"]
    assert list(export.contract["sha256"]) == ["onnx_graph"]
    with pytest.raises(ExportError, match="formats: expected a non-empty subset of onnx,torchscript, got onnx,tflite"):
        export_policy(mlp_policy(hidden=(16,)), env, tmp_path, task=TASK, formats=["onnx", "tflite"])


def robolearn(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "robolearn", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    out = robolearn("train", "configs/nav.yaml", "env.num_envs=16", "trainer.num_steps=16", "trainer.max_iterations=2",
                    "device=cpu", "policy.actor_hidden=[32,32]", "env.episode_seconds=5", "--run-dir", str(run))
    assert out.returncode == 0, out.stderr
    return run


def test_cli_export_then_eval_through_the_exported_policy(run_dir):
    out = robolearn("export", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "parity over 100 steps x 4 envs" in out.stdout and out.stdout.count("wrote ") == 3
    contract = json.loads((run_dir / "export" / "policy.json").read_text())
    assert contract["source"]["iteration"] == 2 and contract["source"]["run"] == str(run_dir)

    common = ["--episodes", "4", "--num-envs", "4", "--json"]
    torch_eval = robolearn("eval", str(run_dir), *common)
    onnx_eval = robolearn("eval", str(run_dir), "--policy", str(run_dir / "export" / "policy.onnx"), *common)
    assert torch_eval.returncode == 0 and onnx_eval.returncode == 0, onnx_eval.stderr
    torch_result, onnx_result = json.loads(torch_eval.stdout), json.loads(onnx_eval.stdout)
    assert onnx_result["policy"].endswith("policy.onnx") and onnx_result["episodes"] == 4
    assert onnx_result["success_rate"] == torch_result["success_rate"]
    assert onnx_result["return_mean"] == pytest.approx(torch_result["return_mean"], abs=1e-3)


def test_cli_exports_and_evaluates_a_recurrent_run(tmp_path):
    run = tmp_path / "run"
    out = robolearn("train", "configs/nav.yaml", "env.num_envs=8", "trainer.num_steps=8", "trainer.max_iterations=1",
                    "device=cpu", "policy.class=gru", "policy.rnn_hidden=16", "policy.actor_hidden=[16]",
                    "policy.critic_hidden=[16]", "env.episode_seconds=5", "--run-dir", str(run))
    assert out.returncode == 0, out.stderr
    out = robolearn("export", str(run), "--formats", "onnx")
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "export" / "policy.json").read_text())["inputs"] == ["obs", "h_in"]
    common = ["--episodes", "2", "--num-envs", "2", "--json"]
    torch_eval = json.loads(robolearn("eval", str(run), *common).stdout)
    onnx_eval = json.loads(robolearn("eval", str(run), "--policy", str(run / "export"), *common).stdout)
    assert onnx_eval["return_mean"] == pytest.approx(torch_eval["return_mean"], abs=1e-3)


def test_cli_export_errors_are_one_line(run_dir, tmp_path):
    out = robolearn("export", str(tmp_path / "missing"))
    assert out.returncode == 1 and out.stderr.strip() == f"robolearn: {tmp_path / 'missing'}: no such checkpoint file or run directory"
    out = robolearn("export", str(run_dir), "--formats", "onnx,tflite", "--out", str(tmp_path / "x"))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "formats:" in out.stderr
    out = robolearn("eval", str(run_dir), "--policy", str(tmp_path / "nope.onnx"))
    assert out.returncode == 1 and out.stderr.strip() == f"robolearn: {tmp_path / 'nope.onnx'}: no such file (expected policy.onnx or its export directory)"


class EnvWith:
    """The shared Nav env with some attributes replaced (what another task would declare)."""

    def __init__(self, env, **attributes):
        self._env = env
        self.__dict__.update(attributes)

    def __getattr__(self, name):
        return getattr(self._env, name)


def test_export_validates_the_contract_before_writing(env, tmp_path):
    out = tmp_path / "export"
    unused_action = EnvWith(env, action_scale=np.array([12.0, 0.0]))
    with pytest.raises(ExportError) as err:
        export_policy(mlp_policy(hidden=(16,)), unused_action, out, task=TASK, formats=["onnx"])
    assert str(err.value) == (f"{TASK} export: contract key 'action.scale': zero entry in [12.0, 0.0]; nothing written")
    assert not out.exists()
    clash = EnvWith(env, fixed_commands={"wheel_r_velocity_rad_s": 0.0})
    with pytest.raises(ExportError, match="contract key 'action.fixed.wheel_r_velocity_rad_s': is also a policy output"):
        export_policy(mlp_policy(hidden=(16,)), clash, out, task=TASK, formats=["onnx"])
    assert not out.exists()


def test_fixed_commands_of_the_task_reach_the_contract_and_the_runner(env, tmp_path):
    from robolearn.deploy import PolicyRunner

    held = EnvWith(env, fixed_commands={"gripper_finger_travel_m": 0, "lamp_on": 1.0})
    contract = export_policy(mlp_policy(hidden=(16,)), held, tmp_path, task=TASK, formats=["onnx"]).contract
    assert contract["action"]["fixed"] == {"gripper_finger_travel_m": 0.0, "lamp_on": 1.0}
    assert dict(PolicyRunner(tmp_path).fixed_commands) == {"gripper_finger_travel_m": 0.0, "lamp_on": 1.0}


def test_exported_files_are_readable_by_others_under_the_usual_umask(env, tmp_path):
    previous = os.umask(0o022)
    try:
        export = export_policy(mlp_policy(hidden=(16,)), env, tmp_path / "export", task=TASK)
    finally:
        os.umask(previous)
    assert sorted((p.name, stat.S_IMODE(p.stat().st_mode)) for p in export.files) == [
        ("policy.json", 0o644), ("policy.onnx", 0o644), ("policy.pt", 0o644)]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["policy.json", "policy.onnx", "policy.pt"]


def test_cli_export_checks_the_output_directory_before_loading_anything(run_dir, tmp_path, monkeypatch, capsys):
    import robolearn.deploy.export as export_module
    from robolearn.cli import main

    def must_not_run(*args, **kwargs):
        raise AssertionError("export_checkpoint ran although the output directory is unusable")

    monkeypatch.setattr(export_module, "export_checkpoint", must_not_run)
    (tmp_path / "a_file").write_text("x")
    for out, reason in ((tmp_path / "a_file", "Not a directory"), (tmp_path / "a_file" / "export", "Not a directory"),
                        (Path("/proc/robolearn-test/export"), "")):
        assert main(["export", str(run_dir), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"robolearn: {out}: cannot write the export here ({reason}") and err.count("\n") == 1
    assert (tmp_path / "a_file").read_text() == "x" and not Path("/proc/robolearn-test").exists()
