"""Image terms in the policy: the flat group split by its layout, images through a CNN per reader,
vector terms normalised; training, checkpoints and resume with image shapes."""

import csv
import math
from pathlib import Path

import pytest
import torch

import image_env
from policies import make_policy, set_statistics
from robolearn.checkpoint import CheckpointError, load_checkpoint, load_policy, save_checkpoint
from robolearn.config import ConfigError, EncoderConfig, load_config, validate_config
from robolearn.deploy.export import export_checkpoint
from robolearn.models import ConvEncoder
from robolearn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "configs" / "nav.yaml"
# a policy group with two images between vector terms, and a privileged critic group without images
SHAPES = {"policy": {"goal": (3,), "depth": (4, 5), "velocity": (2,), "rear": (5, 4)}, "critic": {"state": (7,)}}
DIMS = {"policy": 3 + 20 + 2 + 20, "critic": 7}
TINY_CNN = {"channels": [3], "kernel_sizes": [2], "strides": [1], "features": 6}
RECURRENT = {"rnn_hidden": 8, "actor_hidden": [8], "critic_hidden": [8]}


def policy_obs(batch: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Flat policy observations with recognisable images: depth[b, r, c] = 100 b + 10 r + c, rear = -depth-ish."""
    generator = torch.Generator().manual_seed(seed)
    b, r, c = torch.meshgrid(torch.arange(batch), torch.arange(4), torch.arange(5), indexing="ij")
    terms = {"goal": torch.randn(batch, 3, generator=generator), "depth": (100 * b + 10 * r + c).float(),
             "velocity": torch.randn(batch, 2, generator=generator),
             "rear": -(100 * b + 10 * r + c).float().reshape(batch, 5, 4) - 0.5}
    return torch.cat([terms[name].reshape(batch, -1) for name in SHAPES["policy"]], dim=-1), terms


def capture_cnn_inputs(encoder) -> dict[str, list[torch.Tensor]]:
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in encoder.cnns}
    for name, cnn in encoder.cnns.items():
        cnn.conv[0].register_forward_pre_hook(lambda module, args, name=name: seen[name].append(args[0].clone()))
    return seen


@pytest.mark.parametrize("policy_class", ["mlp", "lstm"])
def test_each_image_term_reaches_its_cnn_as_that_image(policy_class):
    torch.manual_seed(0)
    keys = RECURRENT if policy_class == "lstm" else {}
    policy = make_policy(DIMS, 2, policy_class, SHAPES, critic_obs="critic", encoder=TINY_CNN, **keys)
    seen = capture_cnn_inputs(policy.obs_encoders["actor"])
    flat, terms = policy_obs(3)
    with torch.no_grad():
        policy.act_inference({"policy": flat}, policy.initial_state(3))
    # 1-channel images, row-major, each term to its own CNN (a 4x5 and a 5x4 image: no transposition)
    torch.testing.assert_close(seen["depth"][0], terms["depth"][:, None], atol=0, rtol=0)
    torch.testing.assert_close(seen["rear"][0], terms["rear"][:, None], atol=0, rtol=0)
    if policy_class == "lstm":  # whole rollouts [T, n, D]: the images of every step, time-major
        sequence = torch.stack([flat, flat + 1000.0])  # [2, 3, D]
        obs = {"policy": sequence, "critic": torch.zeros(2, 3, 7)}
        with torch.no_grad():
            policy.evaluate_actions(obs, torch.zeros(2, 3, 2), policy.initial_state(3), torch.zeros(2, 3))
        expected = torch.cat([terms["depth"], terms["depth"] + 1000.0])[:, None]
        torch.testing.assert_close(seen["depth"][-1], expected, atol=0, rtol=0)


def test_vector_terms_are_normalised_and_images_are_not():
    torch.manual_seed(0)
    policy = make_policy(DIMS, 2, "mlp", SHAPES, critic_obs="critic", encoder=TINY_CNN)
    normalizer, encoder = policy.obs_normalizers["policy"], policy.obs_encoders["actor"]
    assert normalizer.mean.shape == (5,)  # goal (3) and velocity (2): the vector terms only
    flat, terms = policy_obs(64, seed=1)
    policy.update_normalizers({"policy": flat, "critic": torch.randn(64, 7)})
    vectors = torch.cat([terms["goal"], terms["velocity"]], dim=-1)
    torch.testing.assert_close(normalizer.mean, vectors.mean(0))
    torch.testing.assert_close(normalizer.var, vectors.var(0, correction=0))

    with torch.no_grad():
        features = encoder(flat, normalizer)  # [normalised vectors, depth features, rear features]
        assert features.shape == (64, 5 + 6 + 6)
        torch.testing.assert_close(features[:, :5], normalizer(vectors))
        set_statistics(normalizer, seed=3)  # other statistics: the vector part moves, the image part does not
        moved = encoder(flat, normalizer)
    assert (moved[:, :5] - features[:, :5]).abs().max() > 0.1
    torch.testing.assert_close(moved[:, 5:], features[:, 5:], atol=0, rtol=0)


def test_readers_have_their_own_cnns_and_a_privileged_critic_is_a_plain_mlp():
    torch.manual_seed(0)
    asymmetric = make_policy(DIMS, 2, "mlp", SHAPES, critic_obs="critic", encoder=TINY_CNN)
    assert list(asymmetric.obs_encoders) == ["actor"]
    assert asymmetric.critic[0].in_features == 7 and asymmetric.actor[0].in_features == 5 + 6 + 6
    symmetric = make_policy(DIMS, 2, "gru", SHAPES, critic_obs="policy", encoder=TINY_CNN, **RECURRENT)
    actor_cnn, critic_cnn = (symmetric.obs_encoders[r].cnns["depth"] for r in ("actor", "critic"))
    assert actor_cnn is not critic_cnn and not torch.equal(actor_cnn.conv[0].weight, critic_cnn.conv[0].weight)
    # value loss reaches the critic's CNN only
    symmetric.value({"policy": policy_obs(4)[0]}, symmetric.initial_state(4)).sum().backward()
    assert critic_cnn.conv[0].weight.grad.abs().sum() > 0 and actor_cnn.conv[0].weight.grad is None

    # without image terms nothing changes: same parameters and buffers as a policy built before shapes
    vector_shapes = {"policy": {"goal": (3,), "lidar": (20,)}, "critic": {"state": (7,)}}
    with_shapes = make_policy({"policy": 23, "critic": 7}, 2, "lstm", vector_shapes, **RECURRENT)
    without = make_policy({"policy": 23, "critic": 7}, 2, "lstm", None, **RECURRENT)
    assert len(with_shapes.obs_encoders) == 0
    shapes_of = lambda policy: {key: value.shape for key, value in policy.state_dict().items()}  # noqa: E731
    assert shapes_of(with_shapes) == shapes_of(without)


def test_whole_sequences_equal_stepping_with_images():
    torch.manual_seed(0)
    policy = make_policy(DIMS, 2, "lstm", SHAPES, critic_obs="policy", encoder=TINY_CNN, **RECURRENT)
    num_steps, num_envs = 6, 3
    obs = {"policy": torch.stack([policy_obs(num_envs, seed=t)[0] for t in range(num_steps)]) / 100.0}
    dones = torch.zeros(num_steps, num_envs)
    dones[2, 1] = 1.0
    start = torch.randn(policy.initial_state(num_envs).shape)
    means, state = [], start
    with torch.no_grad():
        for t in range(num_steps):
            step = policy.act({"policy": obs["policy"][t]}, state)
            means.append(step.mean)
            state = policy.reset_state(step.state, dones[t])
        scores = policy.evaluate_actions(obs, torch.zeros(num_steps, num_envs, 2), start, dones)
    torch.testing.assert_close(scores.mean, torch.stack(means), atol=1e-6, rtol=0)


def test_default_encoder_and_bad_settings():
    default = EncoderConfig()
    cnn = ConvEncoder("depth", (24, 32), channels=default.channels, kernel_sizes=default.kernel_sizes,
                      strides=default.strides, features=default.features, activation="elu")
    assert cnn.feature_map == (32, 4, 6) and cnn.out_dim == 64
    assert cnn(torch.zeros(5, 24 * 32)).shape == (5, 64)
    multiply_adds = 10 * 14 * 16 * 25 + 4 * 6 * 32 * 16 * 9 + 32 * 4 * 6 * 64
    assert multiply_adds < 250_000  # small enough for the 1 ms goal at batch 1 on one thread

    with pytest.raises(ValueError, match=r"^policy.encoder: image term 'depth' of shape \(4, 5\) is too small for "
                                         r"kernel sizes \[5, 3\] with strides \[2, 2\]$"):
        make_policy(DIMS, 2, "mlp", SHAPES)
    budget = {"trainer": {"max_iterations": 1}}
    with pytest.raises(ConfigError, match=r"policy.encoder: strides: one entry per conv layer \(2 in channels\), "
                                          r"got \[2\]"):
        validate_config({"policy": {"encoder": {"strides": [2]}}, **budget})
    with pytest.raises(ConfigError, match=r"policy.encoder.kernel: unknown key \(did you mean kernel_sizes\?\)"):
        validate_config({"policy": {"class": "lstm", "encoder": {"kernel": [3]}}, **budget})
    # null / absent: the default CNN, left out of the resolved config; a given one is kept
    assert "encoder" not in validate_config({"policy": {"encoder": None}, **budget}).to_dict()["policy"]
    config = load_config(NAV, ["policy.encoder.channels=[8]", "policy.encoder.kernel_sizes=[3]",
                               "policy.encoder.strides=[1]"])
    assert config.to_dict()["policy"]["encoder"] == {"channels": [8], "kernel_sizes": [3], "strides": [1],
                                                     "features": 64}
    assert validate_config(config.to_dict()) == config


# --- training, checkpoints, resume ----------------------------------------------------------------

@pytest.fixture(scope="module")
def task():
    with image_env.registered() as name:
        yield name


def image_config(*extra):
    return load_config(NAV, [f"env.task={image_env.TASK}", "env.image_shape=[12, 16]", "env.num_envs=8",
                             "env.nthread=1", "env.episode_seconds=1.0", "trainer.num_steps=8", "device=cpu",
                             "trainer.max_iterations=3", "policy.actor_hidden=[16]", "policy.critic_hidden=[16]",
                             "policy.encoder={channels: [4, 8], kernel_sizes: [3, 3], strides: [2, 2], features: 16}",
                             *extra])


@pytest.mark.parametrize("policy_class", ["mlp", "lstm"])
def test_a_cnn_policy_trains_checkpoints_and_reloads(task, tmp_path, policy_class):
    extra = ["policy.class=lstm", "policy.rnn_hidden=16", "policy.critic_obs=critic"] if policy_class == "lstm" else []
    trainer = Trainer(image_config(*extra), tmp_path / "run")
    assert trainer.env.obs_layout["policy"].shapes["depth"] == (12, 16)
    path = trainer.learn()
    assert trainer.iteration == 3
    assert list(trainer.policy.obs_encoders) == (["actor"] if policy_class == "lstm" else ["actor", "critic"])
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert all(math.isfinite(float(row[key])) for row in rows for key in ("policy_loss", "value_loss", "entropy"))

    state = load_checkpoint(path)
    assert state["obs_shapes"]["policy"] == {"goal": [3], "depth": [12, 16], "velocity": [2], "last_action": [2]}
    assert state["layout"]["obs_shapes"] == state["obs_shapes"]
    policy, _, _ = load_policy(path)
    assert policy.obs_encoders["actor"].cnns["depth"].shape == (12, 16)
    original = trainer.policy.eval()
    for key, value in original.state_dict().items():
        torch.testing.assert_close(policy.state_dict()[key], value, atol=0, rtol=0)
    obs = {group: value[:4] for group, value in trainer.obs.items()}
    with torch.no_grad():
        reloaded, _ = policy.act_inference(obs, policy.initial_state(4))
        trained, _ = original.act_inference(obs, original.initial_state(4))
    torch.testing.assert_close(reloaded, trained, atol=0, rtol=0)

    # `robolearn export RUN`: the checkpoint's network rebuilt from its shapes, through the parity gate
    contract = export_checkpoint(path, tmp_path / "export", formats=["onnx"]).contract
    assert contract["parity"]["max_abs_diff"]["onnxruntime"] <= 1e-5
    assert contract["obs"]["terms"][1] == {"name": "depth", "width": 192, "shape": [12, 16], **image_env.DEPTH_INFO}


def test_resuming_with_another_image_shape_is_refused_in_one_line(task, tmp_path):
    run = tmp_path / "run"
    Trainer(image_config("trainer.max_iterations=1"), run).learn()
    for shape, message in (
            ("[16, 12]", "observation shapes differs at policy.depth: [12, 16] in the run, [16, 12] here"),
            ("[8, 16]", "observation layout differs at policy.depth: 192 in the run, 128 here")):
        with pytest.raises(CheckpointError) as err:
            Trainer.from_checkpoint(run, config=image_config(f"env.image_shape={shape}", "trainer.max_iterations=2"))
        assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    resumed = Trainer.from_checkpoint(run, config=image_config("trainer.max_iterations=2"))
    resumed.learn()
    assert resumed.iteration == 2


def test_a_checkpoint_from_before_obs_shapes_loads_and_resumes(tmp_path):
    overrides = ["env.num_envs=4", "env.nthread=1", "trainer.num_steps=4", "device=cpu", "policy.actor_hidden=[8]",
                 "policy.critic_hidden=[8]", "env.episode_seconds=1.0"]
    path = Trainer(load_config(NAV, [*overrides, "trainer.max_iterations=1"]), tmp_path / "run").learn()
    state = load_checkpoint(path)
    del state["obs_shapes"], state["layout"]["obs_shapes"], state["path"]
    old = save_checkpoint(state, tmp_path / "old" / "checkpoints" / "last.pt")
    assert "encoder" not in state["config"]["policy"]
    policy, _, _ = load_policy(old)
    assert len(policy.obs_encoders) == 0 and policy.obs_normalizers["policy"].mean.shape == (23,)
    resumed = Trainer.from_checkpoint(old, config=load_config(NAV, [*overrides, "trainer.max_iterations=2"]))
    resumed.learn()
    assert resumed.iteration == 2
