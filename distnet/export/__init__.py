"""Exporting trained models for use outside distnet.

* :func:`distnet.export.onnx.export_onnx` -- an ONNX model (``distnet export RUN --format onnx``).
"""
from distnet.export.onnx import export_onnx, to_onnx  # noqa: F401

__all__ = ["export_onnx", "to_onnx"]
