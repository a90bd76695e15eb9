"""Latency of an exported policy at batch 1 on one thread: ``PolicyRunner.step`` and the raw
ONNX Runtime call it wraps (``session.run`` with a feed dict, state carried by hand).

Each call is timed on its own with ``time.perf_counter_ns``; observations are drawn once from a
standard normal and cycled, so the timed loop allocates nothing of its own. A policy with image
terms is fed the same way: the flat vector with the images inside, as ``step`` takes it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from robolearn.deploy.contract import state_shape
from robolearn.deploy.runner import PolicyRunner

WARMUP_CALLS = 500


def measure_latency(path: str | Path, calls: int = 10_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{"PolicyRunner.step": {...}, "onnxruntime.run": {...}}``, each with p50/p99/max in µs."""
    runner = PolicyRunner(path)
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


def _summary(elapsed_ns: np.ndarray) -> dict[str, float]:
    us = elapsed_ns / 1000.0
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}
