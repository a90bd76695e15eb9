"""Transformer policy: sequence training equals acting with the carried context, episode isolation,
masked slots, config, export with the context carried (contract, parity, PolicyRunner), training."""

import json

import numpy as np
import onnx
import pytest
import torch

import image_env
from policies import algorithm_kwargs, make_policy, set_statistics
from robolearn.algorithms import PPO
from robolearn.config import ConfigError, load_config, validate_config
from robolearn.deploy import ContractError, PolicyRunner
from robolearn.deploy.contract import validate
from robolearn.deploy.export import export_policy
from robolearn.envs import make_env
from robolearn.models import TransformerActorCritic
from robolearn.rollout import collect_rollout
from robolearn.storage import RolloutStorage
from test_image_export import peak_bytes
from test_recurrent import CueEnv

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
OBS_DIMS = {"policy": 5, "critic": 7}
ACTION_DIM = 2
SMALL = {"context": 5, "layers": 2, "heads": 2, "width": 8, "ffn_hidden": 16, "encoder_hidden": [8],
         "actor_hidden": [16], "critic_hidden": [16]}
BUDGET = {"trainer": {"max_iterations": 1}}
TASK = "robolearn/Nav-v0"


def with_position_bias(model, seed=0):
    """Give every block's per-age score bias values, as after training (it starts at zero), so a
    wrongly ordered window shows."""
    generator = torch.Generator().manual_seed(seed)
    for memory in (model.actor_memory, model.critic_memory):
        for block in memory.blocks:
            block.age_bias.data.copy_(torch.randn(block.age_bias.shape, generator=generator))
    return model


def make_model(seed=0, critic_obs="critic", **keys):
    torch.manual_seed(seed)
    model = make_policy(OBS_DIMS, ACTION_DIM, "transformer", critic_obs=critic_obs, **{**SMALL, **keys})
    return with_position_bias(model, seed)


def random_obs(num_steps, num_envs, generator):
    return {group: torch.randn(num_steps, num_envs, dim, generator=generator) for group, dim in OBS_DIMS.items()}


def carried_state(model, num_envs, steps=(7, 2, 0, 3), seed=2):
    """A start state as collection leaves it: env i acted ``steps[i]`` steps into its episode (a
    full window, a partial one, none...), so its context holds that many valid slots."""
    generator = torch.Generator().manual_seed(seed)
    state = model.initial_state(num_envs)
    with torch.no_grad():
        for t in range(max(steps)):
            state = model.act({g: x[0] for g, x in random_obs(1, num_envs, generator).items()}, state).state
            started = torch.tensor([float(max(steps) - 1 - t == n) for n in steps])  # n more steps to go
            state = model.reset_state(state, started)
    return state


def rollout(model, num_steps=14, num_envs=4, seed=1):
    """Observations, actions and dones of a rollout (episode ends mid-rollout, one env never ends,
    one episode longer than the context), and the start state."""
    generator = torch.Generator().manual_seed(seed)
    obs = random_obs(num_steps, num_envs, generator)
    dones = torch.zeros(num_steps, num_envs)
    dones[3, 0] = dones[9, 0] = dones[0, 1] = dones[6, 2] = 1.0
    actions = torch.randn(num_steps, num_envs, ACTION_DIM, generator=generator)
    return obs, actions, dones, carried_state(model, num_envs)


def step_by_step(model, obs, dones, state):
    """What collection computes: one new token per step, the context reset after each episode end."""
    means, values = [], []
    for t in range(dones.shape[0]):
        step = model.act({g: x[t] for g, x in obs.items()}, state)
        means.append(step.mean)
        values.append(step.values)
        state = model.reset_state(step.state, dones[t])
    return torch.stack(means), torch.stack(values)


# --- sequences ------------------------------------------------------------------------------------

def test_one_call_sequence_evaluation_equals_stepping_with_the_cache():
    model = make_model()
    obs, actions, dones, state = rollout(model)
    assert model.state_shape == (2, 2 * 2 * 4 + 1, 8) and state.shape == (2, 17, 4, 8)
    assert state[:, -1, :, 0].tolist() == [[4.0, 2.0, 0.0, 3.0]] * 2  # valid slots counted (at most K - 1)
    with torch.no_grad():
        means, values = step_by_step(model, obs, dones, state)
        scores = model.evaluate_actions(obs, actions, state, dones)
    torch.testing.assert_close(scores.mean, means, atol=1e-5, rtol=0)
    torch.testing.assert_close(scores.values, values, atol=1e-5, rtol=0)
    # the carried context mattered: the same rollout from a fresh context differs before the first end
    with torch.no_grad():
        fresh = model.evaluate_actions(obs, actions, model.initial_state(4), dones)
    assert (fresh.mean[:3, 0] - scores.mean[:3, 0]).abs().max() > 1e-3
    torch.testing.assert_close(fresh.mean[:, 2], scores.mean[:, 2], atol=1e-5, rtol=0)  # env 2 carried nothing


def test_act_inference_and_actor_step_follow_act():
    model = make_model(critic_obs="policy")
    obs, _, _, state = rollout(model)
    current = {g: x[0] for g, x in obs.items()}
    with torch.no_grad():
        step = model.act(current, state)
        mean, inference_state = model.act_inference(current, state)
        actor_mean, context = model.actor_step(obs["policy"][0], state[0])
        value = model.value(current, state)
    torch.testing.assert_close(mean, step.mean, atol=0, rtol=0)
    torch.testing.assert_close(actor_mean, step.mean, atol=0, rtol=0)
    torch.testing.assert_close(context, step.state[0], atol=0, rtol=0)
    torch.testing.assert_close(inference_state[0], step.state[0], atol=0, rtol=0)
    torch.testing.assert_close(inference_state[1], state[1], atol=0, rtol=0)  # the critic's context passes through
    torch.testing.assert_close(value, step.values, atol=0, rtol=0)  # value() does not advance the state


def test_no_information_crosses_an_episode_boundary():
    model = make_model()
    obs, actions, dones, state = rollout(model)  # env 0: episodes end at t = 3 and t = 9
    changed = {g: x.clone() for g, x in obs.items()}
    for x in changed.values():
        x[:4, 0] += 5.0  # env 0's first episode in the rollout
    other_start = state.clone()
    other_start[:, :, 0] = torch.randn(other_start[:, :, 0].shape)  # and the context it started from
    with torch.no_grad():
        reference = model.evaluate_actions(obs, actions, state, dones)
        for new_obs, new_state in ((changed, state), (obs, other_start)):
            scores = model.evaluate_actions(new_obs, actions, new_state, dones)
            assert (scores.mean[:4, 0] - reference.mean[:4, 0]).abs().max() > 1e-3
            torch.testing.assert_close(scores.mean[4:, 0], reference.mean[4:, 0], atol=0, rtol=0)
            torch.testing.assert_close(scores.values[4:, 0], reference.values[4:, 0], atol=0, rtol=0)
            torch.testing.assert_close(scores.mean[:, 1:], reference.mean[:, 1:], atol=0, rtol=0)
        # acting: the reset context holds nothing of the ended episode either
        means, _ = step_by_step(model, obs, dones, state)
        changed_means, _ = step_by_step(model, changed, dones, other_start)
    torch.testing.assert_close(changed_means[4:, 0], means[4:, 0], atol=0, rtol=0)
    finished = model.reset_state(state, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert (finished[:, :, [0, 3]] == 0).all() and torch.equal(finished[:, :, 1:3], state[:, :, 1:3])


def test_garbage_in_masked_context_slots_leaves_loss_and_gradients_unchanged():
    model = make_model()
    obs, actions, dones, state = rollout(model)
    memory = model.actor_memory
    history, layers = memory.history, memory.layers
    # slot j of env i is masked when j < K - 1 - n_i (n_i: the valid slots counted in the last row)
    count = state[0, -1, :, 0]
    masked = torch.arange(history).unsqueeze(1) < history - count  # [K - 1, N]
    assert masked.any() and (~masked).any()

    def loss_and_grads(start):
        model.zero_grad()
        log_prob, _, values, _, _ = model.evaluate_actions(obs, actions, start, dones)
        loss = -(log_prob.sum() + values.square().sum())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    def with_garbage(slots):
        start = state.clone()
        entries = start[:, :-1].unflatten(1, (2 * layers, history))  # [2, 2L, K - 1, N, W]: a view
        entries.masked_fill_(slots[None, None, :, :, None], 1e3)  # every block's keys and values there
        start[:, -1, :, 1:] = 1e3  # the counter row's unused columns
        return start

    reference_loss, reference_grads = loss_and_grads(state)
    loss, grads = loss_and_grads(with_garbage(masked))
    torch.testing.assert_close(loss, reference_loss, atol=0, rtol=0)
    for grad, reference in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference, atol=0, rtol=0)
    # the same garbage in a slot that is read changes the loss: the check above would see a leak
    leak_loss, _ = loss_and_grads(with_garbage(masked | (torch.arange(history) == history - 1).unsqueeze(1)))
    assert not torch.equal(leak_loss, reference_loss)


def test_images_go_through_the_cnn_and_sequences_still_equal_stepping():
    torch.manual_seed(0)
    dims = {"policy": 3 + 12 * 16, "critic": 4}
    shapes = {"policy": {"goal": (3,), "depth": (12, 16)}, "critic": {"state": (4,)}}
    cnn = {"channels": [4], "kernel_sizes": [3], "strides": [2], "features": 8}
    model = with_position_bias(make_policy(dims, 2, "transformer", shapes, critic_obs="critic", encoder=cnn, **SMALL))
    assert list(model.obs_encoders) == ["actor"]
    generator = torch.Generator().manual_seed(0)
    obs = {group: torch.rand(6, 3, dim, generator=generator) for group, dim in dims.items()}
    dones = torch.zeros(6, 3)
    dones[2, 1] = 1.0
    with torch.no_grad():
        means, values = step_by_step(model, obs, dones, model.initial_state(3))
        scores = model.evaluate_actions(obs, torch.zeros(6, 3, 2), model.initial_state(3), dones)
    torch.testing.assert_close(scores.mean, means, atol=1e-5, rtol=0)
    torch.testing.assert_close(scores.values, values, atol=1e-5, rtol=0)


# --- config ---------------------------------------------------------------------------------------

def test_config_keys_and_bad_settings_are_one_line_errors():
    config = validate_config({"policy": {"class": "transformer", "context": 16, "heads": 2}, **BUDGET})
    assert (config.policy.context, config.policy.layers, config.policy.heads, config.policy.width) == (16, 2, 2, 64)
    assert validate_config(config.to_dict()).policy == config.policy  # the resolved config reloads
    for policy, message in (
            ({"rnn_hidden": 64}, r"policy.rnn_hidden: unknown key"),
            ({"contxt": 8}, r"policy.contxt: unknown key \(did you mean context\?\)"),
            ({"width": 64, "heads": 5}, r"policy: heads: width 64 does not split into 5 heads"),
            ({"context": 1}, r"policy.context: Input should be greater than or equal to 2"),
            ({"layers": 0}, r"policy.layers: Input should be greater than 0")):
        with pytest.raises(ConfigError, match=message) as err:
            validate_config({"policy": {"class": "transformer", **policy}, **BUDGET})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"policy.context: unknown key"):  # an LSTM has no context
        validate_config({"policy": {"class": "lstm", "context": 8}, **BUDGET})


def test_nav_po_transformer_is_the_lstm_experiment_with_a_transformer():
    transformer, lstm = (load_config(f"configs/nav_po_{name}.yaml").to_dict() for name in ("transformer", "lstm"))
    assert transformer["policy"]["class"] == "transformer" and transformer["policy"]["critic_obs"] == "critic"
    for section in ("env", "algorithm", "trainer", "randomization", "seed", "device"):
        assert transformer[section] == lstm[section], section


# --- export and deploy ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(env, tmp_path_factory):
    torch.manual_seed(0)
    model = make_policy({"policy": 23, "critic": 23}, 2, "transformer", context=16, width=64, heads=4,
                        ffn_hidden=64, actor_hidden=[32], critic_hidden=[32])
    set_statistics(model.obs_normalizers["policy"], 0)
    with_position_bias(model)
    out = tmp_path_factory.mktemp("transformer")
    return model, out, export_policy(model, env, out, task=TASK).contract


def test_export_carries_the_context_explicitly_and_passes_parity(exported):
    model, out, contract = exported
    assert contract["recurrent"] == {"cell": "transformer", "context": 16, "layers": 2, "heads": 4, "width": 64,
                                     "rows": 61, "state_shape": ["rows", "batch", "width"]}
    assert (contract["inputs"], contract["outputs"]) == (["obs", "ctx_in"], ["actions", "ctx_out"])
    parity = contract["parity"]
    assert parity["steps"] == 100 and set(parity["max_abs_diff"]) == {"onnxruntime", "torchscript"}
    assert all(diff <= 1e-5 for diff in parity["max_abs_diff"].values())
    graph = onnx.load(out / "policy.onnx").graph
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]]
    assert dims == [["batch", 23], [61, "batch", 64], ["batch", 2], [61, "batch", 64]]
    assert not any("critic" in t.name for t in graph.initializer)  # the actor alone is deployed
    scripted = torch.jit.load(out / "policy.pt")
    assert [a.name for a in scripted.forward.schema.arguments][1:] == ["obs", "ctx_in"]

    # the runner carries the context (beyond the window) and reset() starts an episode afresh
    runner = PolicyRunner(out)
    sequence = np.random.default_rng(1).normal(0.0, 2.0, (20, 23)).astype(np.float32)
    for _ in range(2):
        context = torch.zeros(61, 1, 64)
        for obs in sequence:
            with torch.no_grad():
                actions, context = model.actor_step(torch.from_numpy(obs[None]), context)
            expected = np.clip(actions.numpy()[0], -1.0, 1.0) * 12.0
            np.testing.assert_allclose(runner.step(obs), expected, atol=1e-5 * 12.0)
        runner.reset()
    with torch.no_grad():
        stateless, _ = model.actor_step(torch.from_numpy(sequence[-1:]), torch.zeros(61, 1, 64))
    assert np.abs(actions.numpy() - stateless.numpy()).max() > 1e-3


def test_contract_describes_the_context_consistently(exported):
    contract = exported[2]
    validate(json.loads(json.dumps(contract)), "policy.json")
    for key, value, message in (("rows", 60, r"'recurrent.rows': expected 2 \* layers \* \(context - 1\) \+ 1 = 61"),
                                ("heads", 5, r"'recurrent.heads': width 64 does not split into 5 heads"),
                                ("state_shape", ["layers", "batch", "hidden_size"],
                                 r"'recurrent.state_shape': expected \['rows', 'batch', 'width'\]"),
                                ("width", None, r"'recurrent.width': expected a positive integer")):
        bad = json.loads(json.dumps(contract))
        bad["recurrent"][key] = value
        with pytest.raises(ContractError, match=message):
            validate(bad, "policy.json")


def test_runner_step_allocates_nothing_per_call(exported):
    runner = PolicyRunner(exported[1])
    obs = np.random.default_rng(0).normal(size=23).astype(np.float32)
    context = np.zeros((61, 1, 64), np.float32)  # the size of the runner's context: 15.6 KB
    plain = peak_bytes(lambda: runner.step(obs))
    copying = peak_bytes(lambda: (context.copy(), runner.step(obs)))
    # Python's own short-lived objects only (a few KB at most), never an array of the context's size
    assert plain < context.nbytes // 2
    assert copying >= plain + context.nbytes - 512  # the measure sees one context copy


def test_a_depth_transformer_exports_with_its_cnn(tmp_path):
    with image_env.registered():
        env = make_env(image_env.NavImageConfig(num_envs=4, nthread=1, image_shape=[24, 32]), seed=0)
        try:
            torch.manual_seed(0)
            dims = {group: layout.size for group, layout in env.obs_layout.items()}
            shapes = {group: layout.shapes for group, layout in env.obs_layout.items()}
            model = make_policy(dims, 2, "transformer", shapes, critic_obs="critic", context=6, width=16, heads=2,
                                ffn_hidden=32, actor_hidden=[16], critic_hidden=[16])
            set_statistics(model.obs_normalizers["policy"], 0)
            with_position_bias(model)
            contract = export_policy(model, env, tmp_path, task=image_env.TASK, formats=["onnx"]).contract
        finally:
            env.close()
    assert contract["parity"]["max_abs_diff"]["onnxruntime"] <= 1e-5
    assert contract["recurrent"]["rows"] == 2 * 2 * 5 + 1
    assert [t.get("shape") for t in contract["obs"]["terms"] if "shape" in t] == [[24, 32]]


# --- training -------------------------------------------------------------------------------------

def test_seeded_short_run_learns_to_remember_the_cue():
    torch.manual_seed(0)
    num_envs, num_steps = 64, 12
    env = CueEnv(num_envs)
    model = make_policy(env.obs_dims, 1, "transformer", context=8, layers=1, heads=2, width=16, ffn_hidden=32,
                        actor_hidden=[32], critic_hidden=[32], init_std=0.5, critic_obs="critic")
    storage = RolloutStorage(num_steps, num_envs, env.obs_dims, 1, model.initial_state(num_envs).shape)
    algorithm = PPO(model, **algorithm_kwargs(gamma=0.9, entropy_coef=0.0, lr=3e-3, lr_schedule="fixed",
                                              num_minibatches=2))
    obs, state = env.reset(), model.initial_state(num_envs)
    rewards = []
    for _ in range(20):  # about 10 iterations find the cue (the LSTM test needs 60)
        obs, state, _ = collect_rollout(model, env, storage, obs, state)
        rewards.append(storage.rewards.mean().item())
        algorithm.update(storage)
    first, last = np.mean(rewards[:3]), np.mean(rewards[-3:])
    # a memoryless policy can do no better than about -(5/6) per step on average here
    assert last > first + 0.5 and last > -0.6, (first, last)


def test_trainer_trains_resumes_and_exports_a_transformer_on_navpo(tmp_path):
    from robolearn.deploy.export import export_checkpoint
    from robolearn.trainer import Trainer

    overrides = ["policy.context=6", "policy.width=16", "policy.heads=2", "policy.ffn_hidden=32",
                 "policy.actor_hidden=[16]", "policy.critic_hidden=[16]", "env.num_envs=8", "env.episode_seconds=1.0",
                 "trainer.num_steps=16", "trainer.max_iterations=2", "device=cpu"]
    trainer = Trainer(load_config("configs/nav_po_transformer.yaml", overrides), tmp_path / "run")
    path = trainer.learn()
    assert isinstance(trainer.policy, TransformerActorCritic) and trainer.iteration == 2
    assert trainer.policy_state.shape == (2, 2 * 2 * 5 + 1, 8, 16)  # actor and critic contexts
    resumed = Trainer.from_checkpoint(path)
    torch.testing.assert_close(resumed.policy_state, trainer.policy_state, atol=0, rtol=0)  # carried on
    export = export_checkpoint(path, formats=["onnx"])  # parity on the checkpoint's own task, NavPO-v0
    assert export.contract["task"] == "robolearn/NavPO-v0" and export.contract["recurrent"]["rows"] == 21
    assert PolicyRunner(export.out_dir).step(np.zeros(export.contract["obs"]["dim"], np.float32)).shape == (2,)
