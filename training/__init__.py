"""Reproduce the ICH ResNet (RSNA 2019 recipe of the seed papers) and export the viewer's ONNX model."""
