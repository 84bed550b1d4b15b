"""Exporting trained models for use outside distnet.

* :func:`export_checkpoint` -- a checkpoint's model and weights to a file
  (``distnet export RUN --format onnx -o model.onnx``);
* :func:`distnet.export.onnx.to_onnx` / :func:`~distnet.export.onnx.export_onnx`
  -- any :class:`~distnet.model.models.Sequential` to ONNX.
"""
from __future__ import annotations

import os

from distnet.errors import DataError, DistnetError
from distnet.export.onnx import export_onnx, to_onnx  # noqa: F401 - onnx itself is imported on use

__all__ = ["export_checkpoint", "export_onnx", "to_onnx"]

FORMATS = ("onnx",)


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, use_ema: bool = False,
                      format: str = "onnx") -> tuple[str, dict]:
    """Export the model of a checkpoint (file, checkpoint directory or run directory).

    The input's image size is the one the run trained on: the checkpoint's
    data identity says it; a checkpoint without one (written before
    distnet stored it) takes it from its job's data, which must then be
    readable here.

    Returns:
        ``(absolute path written, {"checkpoint", "step", "weights", "input_shape"})``.
    """
    from distnet.data.builtin import class_names
    from distnet.jobs.job import config_from_checkpoint, load_checkpoint, load_data, model_from_checkpoint

    if format not in FORMATS:
        raise DataError(f"export: format: Expect: one of {', '.join(FORMATS)} Actual: {format!r}")
    path, state = load_checkpoint(ckpt)
    shape = (state.data.get("train") or {}).get("image_shape")
    if shape is None:
        cfg = config_from_checkpoint(state, path)
        try:
            shape = load_data(cfg)[0].image_shape
        except DistnetError as exc:
            raise DataError(f"{path}: does not say the size of the images it was trained on, and its "
                            f"job's data cannot be read here to find out: {exc}") from None
    cfg = config_from_checkpoint(state, path, ['data.path=""'])
    model = model_from_checkpoint(path, state, cfg, shape, use_ema=use_ema)
    weights = "ema" if use_ema else "trained"
    written = export_onnx(model, out, metadata={
        "checkpoint": path, "step": str(state.step), "weights": weights, "job": cfg.name,
        "class_names": ",".join(class_names(cfg.data.name) or ())})
    return written, {"checkpoint": path, "step": state.step, "weights": weights,
                     "input_shape": tuple(int(s) for s in shape)}

