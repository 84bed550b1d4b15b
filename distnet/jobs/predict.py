"""Class predictions of a trained model on new images: what ``distnet predict`` runs.

Inputs (:func:`read_inputs`):

* an IDX images file (raw or ``.gz``, as MNIST ships them); when the
  matching labels file sits beside it (``...-images-idx3-ubyte`` ->
  ``...-labels-idx1-ubyte``), the predictions are scored against it;
* a ``.npy`` array of images, ``(N, H, W)`` or ``(N, H, W, C)``, uint8
  (0..255) or float in [0, 1];
* an HDF5 file: distnet's dataset format (``distnet data convert``; its
  labels are used for scoring) or any HDF5 file with an ``/images`` dataset
  shaped as above.

Outputs (:func:`write_predictions`): ``preds.npy`` holds the class
probabilities, float32 ``(N, num_classes)`` (the predicted label of row i is
``probs[i].argmax()``); ``preds.csv`` holds one row per image: ``index``,
``label``, ``class`` (its name, when known) and one probability column per
class.

Example:
    >>> result = predict("runs/default", "t10k-images-idx3-ubyte.gz", use_ema=True)  # doctest: +SKIP
    >>> result.labels[:5], result.accuracy                                          # doctest: +SKIP
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from distnet.errors import DataError, InvalidArgumentError

__all__ = ["Inputs", "Predictions", "read_inputs", "predict", "predict_arrays", "write_predictions",
           "softmax"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class Inputs:
    """Images to predict, read lazily in batches.

    Attributes:
        source: what was read (for messages).
        num_samples: the number of images.
        image_shape: ``(H, W, C)``.
        labels: int64 labels when the file has them, else None.
        class_names: names of the classes when the file has them.
    """

    source: str
    num_samples: int
    image_shape: tuple[int, int, int]
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    _read: object  # (start, stop) -> float32 NHWC images in [0, 1]
    _close: object = None  # closes the file read from, if one stays open

    def close(self) -> None:
        """Close the file the images are read from (HDF5 inputs keep it open)."""
        if callable(self._close):
            self._close()

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """float32 NHWC images in [0, 1], ``batch_size`` at a time, in order."""
        for start in range(0, self.num_samples, batch_size):
            yield self._read(start, min(start + batch_size, self.num_samples))


@dataclass
class Predictions:
    """What :func:`predict` found.

    Attributes:
        probabilities: float32 ``(N, num_classes)``, softmax of the model's logits (``(N, 2)``,
            ``[1 - p, p]``, for one sigmoid unit); for a regression the predicted values ``(N, k)``.
        labels: int64 ``(N,)``, the most probable class of each image; for a regression the
            predicted values (float32 ``(N,)`` for one target).
        class_names: the classes' names when known.
        true_labels: the input's labels when it had them.
        accuracy: the fraction predicted right, when the input had labels.
        checkpoint, step, weights: which checkpoint and weights ("trained"/"ema") predicted.
        source: the input.
        task: ``"classes"``, ``"binary"`` or ``"values"`` (a regression; :func:`task_of` the job's loss).
    """

    probabilities: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] | None
    true_labels: np.ndarray | None
    accuracy: float | None
    checkpoint: str
    step: int
    weights: str
    source: str
    task: str = "classes"


def _image_shape(arr, where: str) -> tuple[int, ...]:
    """Check an inputs array's (or h5py dataset's) shape and dtype; the shape of one sample
    (images (N, H, W) get their channel axis; (N, features) and other shapes are kept)."""
    if arr.ndim < 2:
        raise DataError(f"{where}: images: Expect: shape (N, H, W), (N, H, W, C) or (N, features) "
                        f"Actual: {arr.shape}")
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise DataError(f"{where}: images: Expect: dtype uint8 (0..255) or float (0..1) Actual: {arr.dtype}")
    return tuple(int(s) for s in arr.shape[1:]) + ((1,) if arr.ndim == 3 else ())


def _reader(arr, where: str):
    from distnet.data.datasets import check_float_images, images_to_float

    def read(start: int, stop: int) -> np.ndarray:
        block = np.asarray(arr[start:stop])
        if block.dtype.kind == "f" and block.ndim in (3, 4):   # images: in [0, 1]
            check_float_images(block, where, np.arange(start, stop))
        elif block.dtype.kind == "f" and not np.isfinite(block).all():
            row = start + int(np.argmin(np.isfinite(block.reshape(len(block), -1)).all(axis=1)))
            raise DataError(f"{where}: Expect: finite features Actual: a non-finite value in row {row}")
        return images_to_float(block)

    return read


def labels_beside(images_file: Path) -> Path | None:
    """The IDX labels file named like ``images_file`` (``images-idx3`` -> ``labels-idx1``)."""
    name = images_file.name
    if "images-idx3" not in name:
        return None
    candidate = images_file.with_name(name.replace("images-idx3", "labels-idx1"))
    return candidate if candidate.is_file() else None


def read_inputs(path: str | os.PathLike) -> Inputs:
    """Open images to predict: an IDX file, a ``.npy`` array or an HDF5 file.

    Raises:
        DataError: the file is missing, of none of these kinds, or holds
            something other than images (the message says what was expected).
    """
    p = Path(os.fspath(path))
    where = str(p)
    if not p.is_file():
        raise DataError(f"{where}: Expect: an IDX, .npy or HDF5 file of images Actual: "
                        f"{'a directory' if p.is_dir() else 'no such file'}")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if p.suffix == ".npy" or head[:6] == b"\x93NUMPY":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{where}: not a readable .npy array ({exc})") from None
        return Inputs(where, len(arr), _image_shape(arr, where), None, None, _reader(arr, where))
    if head == _HDF5_SIGNATURE:
        return _hdf5_inputs(p, where)
    from distnet.data.idx import read_idx, read_idx_pair

    labels_file = labels_beside(p)
    if labels_file is not None:
        images, labels = read_idx_pair(p, labels_file)
        labels = labels.astype(np.int64)
    else:
        images, labels = read_idx(p), None
    source = where + (f" (labels: {labels_file.name})" if labels_file is not None else "")
    return Inputs(source, len(images), _image_shape(images, where), labels, None, _reader(images, where))


def _hdf5_inputs(p: Path, where: str) -> Inputs:
    from distnet.data.hdf5_format import FORMAT_NAME, _attr_text, open_file

    with open_file(p) as f:
        is_dataset = _attr_text(f.attrs.get("format", "")) == FORMAT_NAME
        labels = f["labels"][()].astype(np.int64) if is_dataset and "labels" in f else None
        found = sorted(f.keys())
    if is_dataset:
        from distnet.data import HDF5Dataset

        ds = HDF5Dataset(p)   # validates the file, labels included
        return Inputs(where, len(ds), tuple(ds.image_shape), labels, ds.class_names,
                      lambda a, b: ds.read(np.arange(a, b))[0], ds.close)
    if "images" not in found:
        raise DataError(f"{where}: Expect: distnet's HDF5 dataset format or an /images dataset "
                        f"Actual: an HDF5 file holding {found}")
    f = open_file(p)
    if not hasattr(f["images"], "shape"):
        f.close()
        raise DataError(f"{where}: /images: Expect: a dataset Actual: a group")
    arr = f["images"]
    try:
        shape = _image_shape(arr, where)
    except DataError:
        f.close()
        raise
    return Inputs(where, int(arr.shape[0]), shape, None, None, _reader(arr, where), f.close)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed in float64 and returned as float32."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def sigmoid_pair(logits: np.ndarray) -> np.ndarray:
    """``(N, 1)`` logits of one unit (binary) as the two classes' probabilities ``[1 - p, p]``, float32."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)[:, :1]))
    return np.concatenate([1.0 - p, p], axis=1).astype(np.float32)


#: What the model's outputs become, by the job's task (:func:`task_of`).
_OUTPUTS = {"classes": softmax, "binary": sigmoid_pair, "values": lambda z: np.asarray(z, np.float32)}


def task_of(loss_type: str) -> str:
    """``"values"`` (a regression loss), ``"binary"`` (``sigmoid_cross_entropy``) or ``"classes"``."""
    from distnet import registry

    found = registry.lookup("loss", loss_type)
    if found is not None and found.info.get("outputs") == "values":
        return "values"
    return "binary" if found is not None and found.name == "sigmoid_cross_entropy" else "classes"


def predict_arrays(model, inputs: Inputs, batch_size: int = 1000, task: str = "classes") -> np.ndarray:
    """Class probabilities of every input, ``(N, num_classes)`` float32 (``(N, 2)`` for a binary
    ``task``); for ``task="values"`` (a regression) the model's outputs, the predicted values."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size: Expect: an int >= 1 Actual: {batch_size!r}")
    out = [_OUTPUTS[task](model(x, training=False).numpy()) for x in inputs.batches(batch_size)]
    if not out:
        return np.zeros((0,) + tuple(model.output_shape), np.float32)
    return np.concatenate(out)


def predict(ckpt: str | os.PathLike, input_file: str | os.PathLike, use_ema: bool = False,
            batch_size: int = 1000) -> Predictions:
    """Predict the class of every image in ``input_file`` with a checkpoint's model.

    Args:
        ckpt: a checkpoint file, checkpoint directory or run directory (its
            newest good checkpoint).
        input_file: images (see :func:`read_inputs`).
        use_ema: predict with the EMA shadow weights.
        batch_size: images per forward pass.

    Raises:
        DataError: the images are not of the size the model was trained on.
        CheckpointError: no usable checkpoint.
    """
    from distnet.jobs.job import load_checkpoint

    path, state = load_checkpoint(ckpt)
    inputs = read_inputs(input_file)
    try:
        return _predict(path, state, inputs, use_ema, batch_size)
    finally:
        inputs.close()


def _predict(path, state, inputs: Inputs, use_ema: bool, batch_size: int) -> Predictions:
    from distnet.jobs.job import config_from_checkpoint, model_from_checkpoint

    trained = (state.data.get("train") or {}).get("image_shape")
    if trained is not None and tuple(trained) != tuple(inputs.image_shape):
        raise DataError(f"{inputs.source}: Expect: images of shape {tuple(trained)} (what {path} was "
                        f"trained on) Actual: {tuple(inputs.image_shape)}")
    # The stored job's data section is not needed to predict (its files may be gone).
    cfg = config_from_checkpoint(state, path, ['data.path=""'])
    model = model_from_checkpoint(path, state, cfg, inputs.image_shape, use_ema=use_ema)
    task = task_of(cfg.loss.type)
    probs = predict_arrays(model, inputs, batch_size, task)
    if task == "values":   # a regression: the values are the predictions; nothing to score classes on
        return Predictions(probs, probs[:, 0] if probs.shape[1:] == (1,) else probs, None, inputs.labels, None,
                           path, state.step, "ema" if use_ema else "trained", inputs.source, task)
    labels = probs.argmax(axis=1).astype(np.int64) if probs.ndim == 2 else np.zeros(0, np.int64)
    from distnet.data.builtin import class_names as dataset_classes

    named = dataset_classes(cfg.data.name)
    class_names = inputs.class_names or (named if named and len(named) == probs.shape[-1] else None)
    accuracy = None
    if inputs.labels is not None and len(labels):
        from distnet.training.evaluation import correct

        accuracy = correct(probs, inputs.labels) / len(labels)
    return Predictions(probs, labels, class_names, inputs.labels, accuracy, path, state.step,
                       "ema" if use_ema else "trained", inputs.source, task)


def write_predictions(pred: Predictions, out: str | os.PathLike) -> str:
    """Write probabilities (``.npy``) or a table (``.csv``), atomically.

    Returns:
        The absolute path written.
    """
    from distnet.tempfiles import create_beside, fill_and_replace

    final = os.path.abspath(os.fspath(out))
    suffix = Path(final).suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise InvalidArgumentError(f"--output: Expect: a file ending in .npy or .csv Actual: {out}")
    if os.path.isdir(final):
        raise InvalidArgumentError(f"--output: Expect: a file name Actual: the directory {out}")
    if not os.path.isdir(os.path.dirname(final)):
        raise InvalidArgumentError(f"--output: Expect: an existing directory Actual: no directory "
                                   f"{os.path.dirname(final)}")
    def fill(tmp: str) -> None:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, pred.probabilities, allow_pickle=False)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                _write_csv(fh, pred)

    fill_and_replace(create_beside(final), final, fill)
    return final


def _write_csv(fh, pred: Predictions) -> None:
    k = pred.probabilities.shape[1]
    writer = csv.writer(fh)
    if pred.task == "values":   # a regression: one column per predicted value
        writer.writerow(["index"] + [f"y{i}" for i in range(k)])
        for i, row in enumerate(pred.probabilities):
            writer.writerow([i] + [f"{v:.6g}" for v in row.tolist()])
        return
    writer.writerow(["index", "label", "class"] + [f"p{i}" for i in range(k)])
    names: Sequence[str] = pred.class_names or [""] * k
    for i, (label, row) in enumerate(zip(pred.labels.tolist(), pred.probabilities)):
        writer.writerow([i, label, names[label]] + [f"{p:.6g}" for p in row.tolist()])
