"""The ADR state machine alone (no MuJoCo): queues, thresholds, exact moves, limits, staleness."""

import numpy as np
import pytest

from robolearn.randomization.adr import HIGH, LOW, AdrParam, AdrState

M = 10  # queue length


def make(init=(1.0, 1.0), limits=(0.0, 2.0), delta=0.1, **kwargs):
    kwargs.setdefault("queue_length", M)
    return AdrState([AdrParam("p", init, limits, delta)], t_low=0.4, t_high=0.8, seed=0, **kwargs)


def tag(adr, side, which=0):
    return np.array([[which, side, adr.ranges[which, side]]])


def feed(adr, side, perf, n):
    for _ in range(n):
        adr.record(tag(adr, side), np.array([perf]))


def test_m_minus_one_results_change_nothing():
    adr = make()
    feed(adr, HIGH, 1.0, M - 1)
    assert adr.ranges.tolist() == [[1.0, 1.0]] and len(adr.queues[0][HIGH]) == M - 1


def test_m_high_results_move_the_bound_exactly_delta_outward():
    adr = make()
    feed(adr, HIGH, 0.9, M)
    assert adr.ranges[0, HIGH] == 1.0 + 0.1 and adr.ranges[0, LOW] == 1.0
    assert adr.queues[0][HIGH] == []
    feed(adr, LOW, 1.0, M)
    assert adr.ranges[0, LOW] == 1.0 - 0.1


def test_low_results_move_inward_but_never_inside_init_range():
    adr = make(init=(0.9, 1.1))
    feed(adr, HIGH, 1.0, M)
    assert adr.ranges[0, HIGH] == pytest.approx(1.2)
    feed(adr, HIGH, 0.1, M)
    assert adr.ranges[0, HIGH] == pytest.approx(1.1)
    feed(adr, HIGH, 0.0, M)
    assert adr.ranges[0, HIGH] == 1.1  # init_range end: no further inward
    feed(adr, LOW, 0.0, M)
    assert adr.ranges[0, LOW] == 0.9


def test_between_thresholds_nothing_moves():
    adr = make()
    feed(adr, HIGH, 0.6, M)
    assert adr.ranges.tolist() == [[1.0, 1.0]] and adr.queues[0][HIGH] == [] and adr.moves == 0


def test_limits_saturate():
    adr = make(limits=(0.0, 1.25))
    for _ in range(5):
        feed(adr, HIGH, 1.0, M)
    assert adr.ranges[0, HIGH] == 1.25


def test_multiplicative_delta():
    adr = AdrState([AdrParam("p", (1.0, 1.0), (0.1, 10.0), 0.5, "multiplicative")], queue_length=1, seed=0)
    adr.record(tag(adr, HIGH), np.array([1.0]))
    adr.record(tag(adr, LOW), np.array([1.0]))
    assert adr.ranges.tolist() == [[1.0 / 1.5, 1.5]]


def test_stale_results_are_ignored():
    adr = make()
    old = tag(adr, HIGH)
    feed(adr, HIGH, 1.0, M)  # the high bound moves to 1.1
    for _ in range(M):
        adr.record(old, np.array([0.0]))  # evaluated at 1.0: stale
    assert adr.queues[0][HIGH] == [] and adr.ranges[0, HIGH] == pytest.approx(1.1)


def test_boundary_fraction_matches_boundary_prob():
    adr = AdrState([AdrParam(f"p{i}", (0.0, 1.0), (0.0, 2.0), 0.1) for i in range(3)], boundary_prob=0.3, seed=1)
    values, tags = adr.sample(100_000, np.random.default_rng(0))
    boundary = tags[:, 0] >= 0
    assert abs(boundary.mean() - 0.3) < 0.01
    # each boundary evaluator is pinned at its bound; the others are inside the ranges
    rows = np.flatnonzero(boundary)
    which, side = tags[rows, 0].astype(int), tags[rows, 1].astype(int)
    assert np.all(values[rows, which] == adr.ranges[which, side])
    assert np.all((values >= 0.0) & (values <= 1.0))
    counts = np.bincount(which * 2 + side, minlength=6) / len(rows)
    assert np.all(np.abs(counts - 1 / 6) < 0.01)


def test_integer_parameters_sample_whole_numbers_uniformly():
    adr = AdrState([AdrParam("k", (0, 3), (0, 5), 1, integer=True)], boundary_prob=0.0, seed=0)
    values, _ = adr.sample(40_000, np.random.default_rng(0))
    assert set(np.unique(values)) == {0.0, 1.0, 2.0, 3.0}
    assert np.all(np.abs(np.bincount(values[:, 0].astype(int)) / 40_000 - 0.25) < 0.01)


def test_entropy_never_decreases_under_constant_high_performance():
    adr = AdrState([AdrParam("a", (1.0, 1.0), (0.0, 3.0), 0.1), AdrParam("b", (0.0, 0.0), (-1.0, 1.0), 0.05)],
                   queue_length=5, seed=2)
    rng, entropies = np.random.default_rng(0), [adr.entropy()]
    for _ in range(400):
        _, tags = adr.sample(16, rng)
        adr.record(tags, np.ones(16))
        entropies.append(adr.entropy())
    assert np.all(np.diff(entropies) >= 0)
    assert entropies[-1] > entropies[0] + 10
    assert adr.ranges.tolist() == [[0.0, 3.0], [-1.0, 1.0]]


def test_oracle_range_settles_near_the_predicted_value():
    """Success probability 1 - |v - v0| / k: a bound moves out while its success rate is above
    t_high and back in below t_low, so it settles where the success rate lies between them,
    |v - v0| in [k (1 - t_high), k (1 - t_low)]: predicted k (1 - (t_low + t_high) / 2)."""
    v0, k, delta = 2.0, 5.0, 0.05
    adr = AdrState([AdrParam("p", (v0, v0), (-10.0, 10.0), delta)], queue_length=200,
                   t_low=0.7, t_high=0.8, seed=3)
    rng = np.random.default_rng(4)
    for _ in range(3000):
        values, tags = adr.sample(64, rng)
        success = rng.random(64) < 1.0 - np.abs(values[:, 0] - v0) / k
        adr.record(tags, success.astype(float))
    predicted, half_band = k * (1 - 0.75), k * 0.05
    lo, hi = adr.ranges[0]
    assert abs(hi - (v0 + predicted)) <= half_band
    assert abs(lo - (v0 - predicted)) <= half_band
    assert adr.moves > 2 * predicted / delta  # it got there by many exact moves


def test_update_false_freezes_and_state_round_trips():
    adr = make(update=False)
    _, tags = adr.sample(100, np.random.default_rng(0))
    assert np.all(tags[:, 0] == -1)
    adr.record(np.array([[0, HIGH, 1.0]] * M), np.ones(M))
    assert adr.ranges.tolist() == [[1.0, 1.0]]

    a = make()
    feed(a, HIGH, 1.0, M)
    feed(a, LOW, 1.0, 3)
    b = make()
    b.load_state_dict(a.state_dict())
    assert b.ranges.tolist() == a.ranges.tolist() and b.queues == a.queues
    ta, tb = a.sample(50, np.random.default_rng(1))[1], b.sample(50, np.random.default_rng(1))[1]
    assert np.array_equal(ta, tb)
    with pytest.raises(ValueError, match="parameters"):
        AdrState([AdrParam("q", (1.0, 1.0), (0.0, 2.0), 0.1)]).load_state_dict(a.state_dict())


def test_limits_must_contain_init_range():
    with pytest.raises(ValueError, match="must contain init_range"):
        AdrParam("p", (0.5, 1.5), (1.0, 2.0), 0.1)
