"""Export (ONNX, TorchScript, contract) and the torch-free onboard PolicyRunner (DESIGN section 5)."""
