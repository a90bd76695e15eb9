"""Export and deploy of policies whose observation holds an image: the flat ``obs`` input with the
image inside, image shapes and task metadata in the contract, the parity gate with carried state,
``PolicyRunner.step_terms`` and the latency benchmark."""

import json
import tracemalloc

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import image_env
from policies import make_policy, mlp_policy, set_statistics
from robolearn.deploy import PolicyRunner
from robolearn.deploy.closed_loop import check_contract_matches_env
from robolearn.deploy.contract import ContractError, validate
from robolearn.deploy.export import ExportError, export_policy
from robolearn.deploy.latency import measure_latency
from robolearn.envs import make_env
from robolearn.envs.core import ObsLayout

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
SHAPE = (24, 32)  # the default encoder's image size
TASK = image_env.TASK


@pytest.fixture(scope="module")
def image_env_4():
    """Four NavImage envs with a 24 x 32 depth term."""
    with image_env.registered():
        env = make_env(image_env.NavImageConfig(num_envs=4, nthread=1, image_shape=list(SHAPE)), seed=0)
        yield env
        env.close()


def image_policy(env, policy_class: str, seed: int = 0, **keys):
    """A fresh policy with the default CNN for ``env``'s observations, normaliser statistics as after training."""
    torch.manual_seed(seed)
    dims = {group: layout.size for group, layout in env.obs_layout.items()}
    shapes = {group: layout.shapes for group, layout in env.obs_layout.items()}
    policy = make_policy(dims, 2, policy_class, shapes, **keys)
    set_statistics(policy.obs_normalizers["policy"], seed)
    return policy


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def mlp_export(image_env_4, tmp_path_factory):
    policy = image_policy(image_env_4, "mlp", actor_hidden=[64, 64], critic_hidden=[64, 64])
    out = tmp_path_factory.mktemp("mlp_cnn")
    return policy, out, export_policy(policy, image_env_4, out, task=TASK, formats=["onnx"]).contract


def test_lstm_cnn_export_passes_parity_with_carried_state(image_env_4, tmp_path):
    policy = image_policy(image_env_4, "lstm", rnn_hidden=32, actor_hidden=[32], critic_hidden=[32],
                          critic_obs="critic")
    contract = export_policy(policy, image_env_4, tmp_path, task=TASK).contract
    parity = contract["parity"]
    assert parity["steps"] == 100 and set(parity["max_abs_diff"]) == {"onnxruntime", "torchscript"}
    assert all(diff <= 1e-5 for diff in parity["max_abs_diff"].values())
    graph = onnx.load(tmp_path / "policy.onnx").graph
    obs_dim = image_env_4.obs_layout["policy"].size
    assert obs_dim == 3 + 768 + 2 + 2
    assert [(i.name, dims(i)) for i in graph.input] == [("obs", ["batch", obs_dim]), ("h_in", [1, "batch", 32]),
                                                        ("c_in", [1, "batch", 32])]
    assert not any("critic" in t.name for t in graph.initializer)  # the actor's CNN only

    # carried state at batch 1, real observations: ONNX Runtime and TorchScript follow the eager actor
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(tmp_path / "policy.pt")
    actor = policy.deployable_actor()
    obs, _ = image_env_4.reset(seed=3)
    eager_state = ort_state = ts_state = [np.zeros((1, 1, 32), np.float32)] * 2
    with torch.no_grad():
        for _ in range(10):
            flat = obs["policy"][:1]
            eager, *eager_state = [t.numpy() for t in actor(*map(torch.from_numpy, [flat, *eager_state]))]
            ort, *ort_state = session.run(None, dict(zip(contract["inputs"], [flat, *ort_state])))
            ts, *ts_state = [t.numpy() for t in scripted(*map(torch.from_numpy, [flat, *ts_state]))]
            np.testing.assert_allclose(ort, eager, atol=1e-5)
            np.testing.assert_allclose(ts, eager, atol=1e-5)
            obs, *_ = image_env_4.step(np.tile(eager, (4, 1)))
    assert np.abs(eager_state[0]).max() > 1e-3


def test_the_contract_describes_the_image_term(mlp_export, image_env_4):
    _, out, contract = mlp_export
    assert all(diff <= 1e-5 for diff in contract["parity"]["max_abs_diff"].values())
    assert contract["obs"]["dim"] == image_env_4.obs_layout["policy"].size
    terms = contract["obs"]["terms"]
    assert [t["name"] for t in terms] == ["goal", "depth", "velocity", "last_action"]
    assert terms[0] == {"name": "goal", "width": 3}  # a vector term: no shape
    assert terms[1] == {"name": "depth", "width": 768, "shape": [24, 32], **image_env.DEPTH_INFO}
    assert json.loads((out / "policy.json").read_text()) == contract

    bad = json.loads(json.dumps(contract))
    bad["obs"]["terms"][1]["shape"] = [32, 32]
    with pytest.raises(ContractError, match=r"contract key 'obs.terms\[1\].shape': \[32, 32\] holds 1024 values, "
                                            r"the width is 768"):
        validate(bad, "policy.json")
    bad["obs"]["terms"][1]["shape"] = [24, 0]
    with pytest.raises(ContractError, match=r"obs.terms\[1\].shape': expected a list of positive integers"):
        validate(bad, "policy.json")


def test_a_contract_is_checked_against_the_simulated_image_shape(mlp_export, image_env_4):
    _, _, contract = mlp_export
    check_contract_matches_env(contract, image_env_4, TASK, "policy.onnx")
    transposed = ObsLayout({name: (32, 24) if name == "depth" else shape
                            for name, shape in image_env_4.obs_layout["policy"].shapes.items()})

    class Transposed:
        obs_layout = {"policy": transposed}

        def __getattr__(self, name):
            return getattr(image_env_4, name)

    with pytest.raises(ContractError, match=r"^policy.onnx: contract key 'obs.terms.shape' is \{'depth': \[24, 32\]\}, "
                                            r"the simulated env has \{'depth': \[32, 24\]\}$"):
        check_contract_matches_env(contract, Transposed(), TASK, "policy.onnx")


def test_task_metadata_that_cannot_go_into_the_contract_is_refused(image_env_4, tmp_path):
    class Env:
        def __init__(self, info):
            self.obs_term_info = info

        def __getattr__(self, name):
            return getattr(image_env_4, name)

    policy = image_policy(image_env_4, "mlp", actor_hidden=[8], critic_hidden=[8])
    for info, message in (
            ({"sonar": {"units": "m"}}, "obs_term_info: 'sonar' is not an observation term of the task"),
            ({"depth": {"width": 3}}, "obs_term_info['depth']: 'width' comes from the observation layout"),
            ({"depth": {"far": float("inf")}}, "obs_term_info['depth']['far']: expected JSON data")):
        with pytest.raises(ExportError, match=message.replace("[", r"\[").replace("]", r"\]")):
            export_policy(policy, Env(info), tmp_path / "x", task=TASK, formats=["onnx"])
    assert not (tmp_path / "x").exists()
    contract = export_policy(policy, Env({"depth": {"near": np.float32(0.25), "pose": (0.1, 0.0)}}), tmp_path / "y",
                             task=TASK, formats=["onnx"]).contract
    assert contract["obs"]["terms"][1] == {"name": "depth", "width": 768, "shape": [24, 32], "near": 0.25,
                                           "pose": [0.1, 0.0]}


def test_step_terms_writes_the_terms_into_the_flat_input(mlp_export, image_env_4):
    policy, out, _ = mlp_export
    runner, flat_runner = PolicyRunner(out), PolicyRunner(out)
    assert dict(runner.term_shapes) == {"goal": (3,), "depth": SHAPE, "velocity": (2,), "last_action": (2,)}
    layout = image_env_4.obs_layout["policy"]
    obs, _ = image_env_4.reset(seed=1)
    actor = policy.deployable_actor()
    for _ in range(5):
        flat = obs["policy"][0]
        terms = {name: flat[layout.slices[name]].reshape(shape) for name, shape in layout.shapes.items()}
        assert np.array_equal(terms["depth"], image_env.depth_image(image_env_4, obs["policy"])[0])
        command = runner.step_terms(dict(reversed(terms.items())))  # any order of the keys
        np.testing.assert_array_equal(command, flat_runner.step(flat))
        with torch.no_grad():
            eager = actor(torch.from_numpy(flat[None])).numpy()[0]
        np.testing.assert_allclose(command, np.clip(eager, -1, 1) * 12.0, atol=1e-4)
        obs, *_ = image_env_4.step(np.tile(eager, (4, 1)))

    # a transposed image, a missing or unknown term, another dtype: one line naming the term
    good = {name: np.zeros(shape, np.float32) for name, shape in runner.term_shapes.items()}
    cases = [({**good, "depth": np.zeros((32, 24), np.float32)},
              "obs term 'depth': expected shape (24, 32), got (32, 24)"),
             ({**good, "depth": np.zeros(768, np.float32)}, "obs term 'depth': expected shape (24, 32), got (768,)"),
             ({k: v for k, v in good.items() if k != "goal"}, "obs term 'goal': missing (the policy reads goal, depth, "
                                                              "velocity, last_action)"),
             ({**good, "lidar": np.zeros(16, np.float32)}, "obs term 'lidar': unknown (the policy reads goal, depth, "
                                                           "velocity, last_action)"),
             ({**good, "goal": np.zeros(3)}, "obs term 'goal': expected a float32 array of shape (3,), got float64 "
                                             "array of shape (3,)")]
    for terms, message in cases:
        with pytest.raises(ValueError) as err:
            runner.step_terms(terms)
        assert str(err.value) == message

    # a non-finite pixel: the safe action, counted like a non-finite observation
    holes = {**good, "depth": np.full(SHAPE, np.nan, np.float32)}
    np.testing.assert_array_equal(runner.step_terms(holes), np.zeros(2, np.float32))
    assert runner.nonfinite_obs == 1


def peak_bytes(call, calls: int = 200, trials: int = 3) -> int:
    """Peak of the memory traced while ``call`` runs ``calls`` times, above what was held before
    (numpy reports its buffers to tracemalloc; ONNX Runtime's own arena is not traced); the least
    of ``trials`` measures, since what else lands in one only adds to it (tracemalloc's own first
    start in a process, a one-off allocation, another Python thread's work) while an allocation
    per call shows in every one."""
    for _ in range(20):
        call()
    peaks = []
    for _ in range(trials):
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(calls):
                call()
            peaks.append(tracemalloc.get_traced_memory()[1] - start)
        finally:
            tracemalloc.stop()
    return min(peaks)


def test_step_terms_allocates_nothing_per_call(mlp_export):
    _, out, _ = mlp_export
    runner = PolicyRunner(out)
    rng = np.random.default_rng(0)
    terms = {name: rng.random(shape).astype(np.float32) for name, shape in runner.term_shapes.items()}
    flat = np.concatenate([value.ravel() for value in terms.values()])
    # as little as step(), which copies into the bound buffer too: an image copy per call would add
    # 3 KB; the margin covers Python's own short-lived objects (shape tuples, dict lookups: ~1.4 KB
    # in a fresh CI venv)
    image_bytes = 4 * 24 * 32
    copying = peak_bytes(lambda: (terms["depth"].copy(), runner.step_terms(terms)))
    plain = peak_bytes(lambda: runner.step_terms(terms))
    assert plain <= peak_bytes(lambda: runner.step(flat)) + 2048
    assert copying >= plain + image_bytes - 512  # the measure sees one image copy


def test_deploy_bench_measures_an_image_policy(mlp_export):
    _, out, _ = mlp_export
    results = measure_latency(out, calls=50)
    assert set(results) == {"PolicyRunner.step", "onnxruntime.run"}
    assert all(0 < row["p50_us"] <= row["p99_us"] <= row["max_us"] for row in results.values())


def test_vector_policies_take_terms_too(env, tmp_path):
    """A policy exported without image terms (as before shapes existed): every term is a vector."""
    export_policy(mlp_policy(hidden=(16,)), env, tmp_path, task="robolearn/Nav-v0", formats=["onnx"])
    assert all("shape" not in term for term in json.loads((tmp_path / "policy.json").read_text())["obs"]["terms"])
    runner = PolicyRunner(tmp_path)
    assert dict(runner.term_shapes) == {"goal": (3,), "velocity": (2,), "lidar": (16,), "last_action": (2,)}
    flat = np.random.default_rng(0).normal(size=23).astype(np.float32)
    terms = {"goal": flat[:3], "velocity": flat[3:5], "lidar": flat[5:21], "last_action": flat[21:]}
    np.testing.assert_array_equal(runner.step_terms(terms).copy(), PolicyRunner(tmp_path).step(flat))
