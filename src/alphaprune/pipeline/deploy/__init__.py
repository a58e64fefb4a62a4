"""Deployment: the exported files (ONNX, torch.export: `export`), timing teacher and student
(`latency`), and the training-step benchmark (`bench`)."""
