"""Export (ONNX, TorchScript, contract) and the torch-free onboard PolicyRunner (DESIGN section 5).

``from robolearn.deploy import PolicyRunner`` needs only numpy and onnxruntime; the exporter
(:mod:`robolearn.deploy.export`, which needs torch) is imported on its own.
"""

from robolearn.deploy.contract import ContractError
from robolearn.deploy.runner import PolicyFileError, PolicyRunner

__all__ = ["ContractError", "PolicyFileError", "PolicyRunner"]
