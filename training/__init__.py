"""Reproduce the ICH ResNet (RSNA 2019 recipe of the seed papers) and export the viewer's ONNX model."""

import ich_viewer  # noqa: F401 - first: it turns ONNX Runtime's telemetry off before onnxruntime is imported
