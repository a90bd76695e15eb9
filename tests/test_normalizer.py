"""Running observation statistics against numpy on a stream of uneven batches."""

import numpy as np
import torch

from robolearn.models.normalizer import EmpiricalNormalizer


def _stream(seed=0):
    rng = np.random.default_rng(seed)
    for size in (1, 7, 300, 2, 1000, 45, 3):
        yield (rng.normal(size=(size, 3)) * [1.0, 10.0, 0.01] + [5.0, -3.0, 100.0]).astype(np.float32)


def test_statistics_match_numpy_on_a_stream():
    normalizer = EmpiricalNormalizer(3)
    seen = []
    for batch in _stream():
        normalizer.update(torch.from_numpy(batch))
        seen.append(batch)
        all_seen = np.concatenate(seen).astype(np.float64)
        np.testing.assert_allclose(normalizer.mean.numpy(), all_seen.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(normalizer.var.numpy(), all_seen.var(0), rtol=1e-5, atol=1e-9)
        assert normalizer.count.item() == len(all_seen)


def test_merge_of_moments_equals_update_on_the_data():
    a, b = (torch.randn(50, 4) * 3 + 1, torch.randn(70, 4) - 2)
    by_update, by_merge = EmpiricalNormalizer(4), EmpiricalNormalizer(4)
    by_update.update(a)
    by_update.update(b)
    for x in (a, b):
        var, mean = torch.var_mean(x, dim=0, correction=0)
        by_merge.merge(x.shape[0], mean, var)
    moments = lambda n: {k: v for k, v in n.state_dict().items() if k in ("mean", "var", "count")}  # noqa: E731
    torch.testing.assert_close(moments(by_merge), moments(by_update))


def test_min_and_max_are_the_extremes_seen_and_unknown_in_older_checkpoints():
    normalizer = EmpiricalNormalizer(3)
    batches = [torch.randn(40, 3) * 2, torch.randn(10, 3) + 5]
    for batch in batches:
        normalizer.update(batch)
    seen = torch.cat(batches)
    assert torch.equal(normalizer.min, seen.amin(0)) and torch.equal(normalizer.max, seen.amax(0))
    older = {k: v for k, v in normalizer.state_dict().items() if k not in ("min", "max")}
    loaded = EmpiricalNormalizer(3)
    loaded.load_state_dict(older)
    assert loaded.min.isnan().all() and loaded.max.isnan().all()
    loaded.update(torch.full((1, 3), 7.0))  # learning on from an older checkpoint: the range starts here
    assert loaded.min.tolist() == [7.0] * 3 and loaded.max.tolist() == [7.0] * 3


def test_forward_normalizes_and_clips():
    normalizer = EmpiricalNormalizer(2, clip=5.0)
    normalizer.update(torch.randn(10_000, 2) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -1.0]))
    y = normalizer(torch.randn(10_000, 2) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -1.0]))
    assert y.mean(0).abs().max() < 0.05 and (y.std(0) - 1).abs().max() < 0.05
    assert normalizer(torch.tensor([[1e6, -1e6]])).tolist() == [[5.0, -5.0]]


def test_no_update_in_eval_mode_or_past_until():
    normalizer = EmpiricalNormalizer(1, until=10)
    normalizer.eval()
    normalizer.update(torch.ones(4, 1))
    assert normalizer.count.item() == 0
    normalizer.train()
    normalizer.update(torch.ones(12, 1))
    normalizer.update(torch.ones(5, 1))
    assert normalizer.count.item() == 12


def test_statistics_are_in_state_dict():
    normalizer = EmpiricalNormalizer(3)
    normalizer.update(torch.randn(20, 3))
    restored = EmpiricalNormalizer(3)
    restored.load_state_dict(normalizer.state_dict())
    x = torch.randn(5, 3)
    torch.testing.assert_close(restored(x), normalizer(x))
