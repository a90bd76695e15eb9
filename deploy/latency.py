"""Latency of an exported policy at batch 1 on one thread: ``PolicyRunner.step`` and the raw
ONNX Runtime call it wraps (``session.run`` with a feed dict, state carried by hand), in a hot loop
(:func:`measure_latency`) and at a robot's control rate (:func:`measure_latency_at_rate`).

At a low rate the core idles between ticks: caches go cold, the CPU drops to a low frequency or a
deep idle state, and the first instructions after the wake-up pay for it (a 23-value MLP: ~15 µs
in a hot loop, hundreds of µs at 20 Hz). :func:`measure_latency_at_rate` times ``step`` at the
tick under four ways to wait for it: ``sleep`` (what a plain controller does), ``sleep+warm``
(sleep until ``lead`` before the tick, :meth:`PolicyRunner.warm`, sleep on), ``sleep+spin`` (sleep
until ``lead`` before the tick, then busy-wait: the core stays awake) and ``sleep+warm+spin``.

Each call is timed on its own with ``time.perf_counter_ns``; observations are drawn once from a
standard normal and cycled, so the timed loop allocates nothing of its own. A policy with image
terms is fed the same way: the flat vector with the images inside, as ``step`` takes it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from robolearn.deploy.contract import state_shape
from robolearn.deploy.runner import HEALTH_SIGMA, PolicyRunner

WARMUP_CALLS = 500


def measure_latency(path: str | Path, calls: int = 10_000, seed: int = 0,
                    health: bool = True) -> dict[str, dict[str, float]]:
    """``{"PolicyRunner.step": {...}, "onnxruntime.run": {...}}``, each with p50/p99/max in µs
    (``health``: with the runner's observation health check, its default)."""
    runner = PolicyRunner(path, health_sigma=HEALTH_SIGMA if health else None)
    observations = np.random.default_rng(seed).standard_normal((1024, runner.obs_dim)).astype(np.float32)
    count = len(observations)
    elapsed = np.zeros(calls, np.int64)
    clock = time.perf_counter_ns

    for i in range(WARMUP_CALLS):
        runner.step(observations[i % count])
    for i in range(calls):
        obs = observations[i % count]
        start = clock()
        runner.step(obs)
        elapsed[i] = clock() - start
    results = {"PolicyRunner.step": _summary(elapsed)}

    session = runner.session
    inputs, outputs = runner.contract["inputs"], runner.contract["outputs"]
    recurrent = runner.recurrent
    batched = observations[:, None, :]
    feeds = {name: np.zeros(state_shape(recurrent, 1), np.float32) for name in inputs[1:]}
    for i in range(WARMUP_CALLS):
        feeds["obs"] = batched[i % count]
        feeds.update(zip(inputs[1:], session.run(outputs, feeds)[1:]))
    for i in range(calls):
        feeds["obs"] = batched[i % count]
        start = clock()
        out = session.run(outputs, feeds)
        elapsed[i] = clock() - start
        feeds.update(zip(inputs[1:], out[1:]))
    results["onnxruntime.run"] = _summary(elapsed)
    return results


#: the ways to wait for a tick :func:`measure_latency_at_rate` compares
WAIT_MODES = ("sleep", "sleep+warm", "sleep+spin", "sleep+warm+spin")


def measure_latency_at_rate(path: str | Path, rate_hz: float, ticks: int = 200, lead_s: float = 0.001,
                            cpu: int | None = None, modes: tuple[str, ...] = WAIT_MODES,
                            seed: int = 0, health: bool = True) -> dict[str, dict[str, float]]:
    """``PolicyRunner.step`` latency at ``rate_hz``, per wait mode (p50/p99/max in µs), each mode's
    ``ticks`` ticks run in turn. ``cpu``: pin this process to that core first (as a controller
    on an isolated core would run)."""
    import os

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    runner = PolicyRunner(path, health_sigma=HEALTH_SIGMA if health else None)
    observations = np.random.default_rng(seed).standard_normal((1024, runner.obs_dim)).astype(np.float32)
    period, clock = 1.0 / rate_hz, time.perf_counter
    for i in range(WARMUP_CALLS):
        runner.step(observations[i % len(observations)])
    results = {}
    for mode in modes:
        elapsed = np.zeros(ticks, np.int64)
        tick = clock() + period
        for i in range(ticks):
            if "warm" in mode or "spin" in mode:
                _sleep_until(tick - lead_s, clock)
                if "warm" in mode:
                    runner.warm()
            if "spin" in mode:
                while clock() < tick:
                    pass
            else:
                _sleep_until(tick, clock)
            obs = observations[i % len(observations)]
            start = time.perf_counter_ns()
            runner.step(obs)
            elapsed[i] = time.perf_counter_ns() - start
            tick += period
        results[mode] = _summary(elapsed)
    return results


def _sleep_until(deadline: float, clock) -> None:
    remaining = deadline - clock()
    if remaining > 0:
        time.sleep(remaining)


def _summary(elapsed_ns: np.ndarray) -> dict[str, float]:
    us = elapsed_ns / 1000.0
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}
