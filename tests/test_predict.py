"""``distnet predict`` and distnet.jobs.predict: a trained run's checkpoint predicts
IDX, .npy and HDF5 images; outputs .npy and .csv; clear errors."""
from __future__ import annotations

import csv
import os
import stat

import h5py
import numpy as np
import pytest
from trained_run import train_small_conv

from distnet.runner import exit_status
from distnet.jobs.cli import main
from distnet.data import convert_idx_to_hdf5
from distnet.data.builtin import EMBEDDED_DIR, FASHION_MNIST_CLASSES, split_files
from distnet.data.idx import read_idx
from distnet.jobs.predict import predict, read_inputs, softmax

IMAGES, LABELS = split_files(EMBEDDED_DIR, "test")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_small_conv(tmp_path_factory.mktemp("predict"))


def reference(run_dir, x, use_ema):
    """distnet's own forward pass with the checkpoint's weights, softmaxed."""
    from distnet.jobs.job import config_from_checkpoint, load_checkpoint, model_from_checkpoint

    path, state = load_checkpoint(run_dir)
    cfg = config_from_checkpoint(state, path)
    model = model_from_checkpoint(path, state, cfg, x.shape[1:], use_ema=use_ema)
    z = model(x, training=False).numpy().astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("use_ema", [False, True])
def test_predict_an_idx_file_with_its_labels_beside_it(capsys, run_dir, use_ema):
    x = read_idx(IMAGES)[..., None].astype(np.float32) / np.float32(255)
    y = read_idx(LABELS)
    probs = reference(run_dir, x, use_ema)
    code, out, err = run(capsys, "predict", str(run_dir), "--input", str(IMAGES),
                         *(["--ema"] if use_ema else []))
    assert code == exit_status.OK, err
    lines = out.splitlines()
    assert len(lines) == 12   # ten predictions, "... more", the summary
    for i, line in enumerate(lines[:10]):
        label = int(probs[i].argmax())
        name = FASHION_MNIST_CLASSES[label]
        assert line.split() [:2] == [str(i), str(label)] and f" {name} " in line
        assert f"p={probs[i, label]:.4f}" in line and line.endswith(f"(true {y[i]})")
    assert lines[10] == "  ... 1990 more; --output preds.csv or preds.npy writes them all"
    accuracy = float(np.mean(probs.argmax(1) == y))
    weights = "ema" if use_ema else "trained"
    assert lines[11].startswith(f"predicted 2000 images of {IMAGES} (labels: {LABELS.name}) with the "
                                f"{weights} weights of {run_dir / 'checkpoints' / 'ckpt-00000006.h5'} "
                                f"(step 6); accuracy {accuracy:.4f} against its labels")


def test_npy_output_holds_the_probabilities_and_csv_a_row_per_image(capsys, run_dir, tmp_path):
    images = read_idx(IMAGES)[:300]
    np.save(tmp_path / "u8.npy", images)                                    # (N, H, W) uint8
    np.save(tmp_path / "f32.npy", (images[..., None] / 255.0).astype(np.float32))  # (N, H, W, 1) floats
    probs = reference(run_dir, images[..., None].astype(np.float32) / np.float32(255), True)
    old = os.umask(0o022)
    try:
        for name in ("u8", "f32"):
            code, out, err = run(capsys, "predict", str(run_dir), "--input", str(tmp_path / f"{name}.npy"),
                                 "--ema", "--output", str(tmp_path / f"{name}-preds.npy"), "--batch-size", "64")
            assert code == exit_status.OK, err
            got = np.load(tmp_path / f"{name}-preds.npy")
            assert got.dtype == np.float32 and got.shape == (300, 10)
            np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-6)
            assert out.strip().endswith(f"wrote {tmp_path / f'{name}-preds.npy'}")
            assert "accuracy" not in out   # a bare array has no labels
        code, out, err = run(capsys, "predict", str(run_dir), "--input", str(tmp_path / "u8.npy"), "--ema",
                             "--output", str(tmp_path / "preds.csv"))
    finally:
        os.umask(old)
    assert code == exit_status.OK, err
    assert stat.S_IMODE(os.stat(tmp_path / "preds.csv").st_mode) == 0o644
    with open(tmp_path / "preds.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["index", "label", "class"] + [f"p{i}" for i in range(10)]
    assert len(rows) == 301
    for i in (0, 1, 150, 299):
        label = int(probs[i].argmax())
        assert rows[i + 1][:3] == [str(i), str(label), FASHION_MNIST_CLASSES[label]]
        np.testing.assert_allclose([float(v) for v in rows[i + 1][3:]], probs[i], rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["f32-preds.npy", "f32.npy", "preds.csv", "u8-preds.npy", "u8.npy"]


def test_hdf5_inputs_dataset_format_and_plain(run_dir, tmp_path):
    h5 = convert_idx_to_hdf5(IMAGES, LABELS, tmp_path / "test.h5", num_classes=10,
                             class_names=[f"c{i}" for i in range(10)])
    pred = predict(run_dir, h5)
    x = read_idx(IMAGES)[..., None].astype(np.float32) / np.float32(255)
    probs = reference(run_dir, x, False)
    np.testing.assert_allclose(pred.probabilities, probs, rtol=1e-5, atol=1e-6)
    assert pred.class_names == tuple(f"c{i}" for i in range(10))   # the file's own names
    assert pred.accuracy == pytest.approx(float(np.mean(probs.argmax(1) == read_idx(LABELS))))
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["images"] = read_idx(IMAGES)[:40]
    pred = predict(run_dir, tmp_path / "plain.h5")
    np.testing.assert_allclose(pred.probabilities, probs[:40], rtol=1e-5, atol=1e-6)
    assert pred.accuracy is None and pred.class_names == FASHION_MNIST_CLASSES


def test_softmax_known_values():
    p = softmax(np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]]))
    np.testing.assert_allclose(p, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-7)
    assert p.dtype == np.float32


def test_images_of_another_size_are_refused_with_the_size_expected(capsys, run_dir, tmp_path):
    from distnet.checkpoint import save
    from distnet.data.identity import data_identity
    from distnet.jobs.job import load_data, load_checkpoint
    from distnet.jobs.config import parse_job

    np.save(tmp_path / "big.npy", np.zeros((3, 32, 32), np.uint8))
    # The trainer stores the data's identity: the message names the size trained on.
    path, state = load_checkpoint(run_dir)
    assert state.data == data_identity(*load_data(parse_job(state.config_text, "stored")))
    code, _, err = run(capsys, "predict", str(run_dir), "--input", str(tmp_path / "big.npy"))
    assert code == exit_status.BAD_INPUT
    assert err == (f"distnet: error: {tmp_path / 'big.npy'}: Expect: images of shape (28, 28, 1) (what "
                   f"{path} was trained on) Actual: (32, 32, 1)\n")
    # A checkpoint without a data identity (an older run): the weights' shapes tell.
    state.data = {}
    copy = tmp_path / "ckpt-00000006.h5"
    save(copy, state)
    code, _, err = run(capsys, "predict", str(copy), "--input", str(tmp_path / "big.npy"))
    assert code == exit_status.BAD_INPUT and err.count("\n") == 1 and "Traceback" not in err
    assert "dense/kernel: Expect: shape (1024, 10) for inputs of shape (32, 32, 1) Actual: (784, 10)" in err


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.npy", "Expect: an IDX, .npy or HDF5 file of images Actual: no such file"),
    (lambda d: d, "Expect: an IDX, .npy or HDF5 file of images Actual: a directory"),
    (lambda d: (np.save(d / "v.npy", np.zeros(5)), d / "v.npy")[1],
     r"images: Expect: shape (N, H, W), (N, H, W, C) or (N, features) Actual: (5,)"),
    (lambda d: (np.save(d / "s.npy", np.array(["a"] * 8).reshape(2, 2, 2)), d / "s.npy")[1],
     "images: Expect: dtype uint8 (0..255) or float (0..1) Actual: <U1"),
    (lambda d: (np.save(d / "f.npy", np.full((2, 28, 28), 2.0)), d / "f.npy")[1],
     "images: Expect: float values in [0, 1] Actual: 2.0 in row 0"),
    (lambda d: (d.joinpath("t.txt").write_text("not images"), d / "t.txt")[1], "t.txt"),
])
def test_bad_inputs_are_one_line_errors(capsys, run_dir, tmp_path, make, message):
    target = make(tmp_path)
    code, out, err = run(capsys, "predict", str(run_dir), "--input", str(target), "--output",
                         str(tmp_path / "p.npy"))
    assert code == exit_status.BAD_INPUT and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "p.npy").exists()


def test_bad_outputs_write_nothing(capsys, run_dir, tmp_path):
    code, _, err = run(capsys, "predict", str(run_dir), "--input", str(IMAGES), "--output",
                       str(tmp_path / "p.txt"))
    assert code == exit_status.BAD_INPUT and "--output: Expect: a file ending in .npy or .csv" in err
    code, _, err = run(capsys, "predict", str(run_dir), "--input", str(IMAGES), "--output",
                       str(tmp_path / "no" / "p.npy"))
    assert code == exit_status.BAD_INPUT and "--output: Expect: an existing directory" in err
    assert os.listdir(tmp_path) == []


def test_read_inputs_pairs_idx_labels_only_when_present(tmp_path):
    import shutil

    shutil.copy(IMAGES, tmp_path / IMAGES.name)
    inputs = read_inputs(tmp_path / IMAGES.name)
    assert inputs.labels is None and inputs.num_samples == 2000 and inputs.image_shape == (28, 28, 1)
    shutil.copy(LABELS, tmp_path / LABELS.name)
    inputs = read_inputs(tmp_path / IMAGES.name)
    np.testing.assert_array_equal(inputs.labels, read_idx(LABELS))
