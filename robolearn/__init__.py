"""robolearn: sim-to-real robot learning on batched MuJoCo (PPO, ADR, ONNX deployment)."""

__version__ = "0.1.0"
