"""Beyond images (issue 23, item 5): datasets of any feature shape with integer or float targets,
regression and binary classification through the Trainer, the metric per task, job files and
``distnet eval`` on the generated tabular datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.runner import exit_status
from distnet.jobs.cli import main
from distnet.data import ArrayDataset
from distnet.data.synthetic import load_synthetic
from distnet.errors import ConfigError, DataError
from distnet.training.trainer import Trainer
from distnet.training.evaluation import Metric, metric_for

EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "jobs" / "tabular_regression.toml"


def regression(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 20)).astype(np.float32)
    return x, (x[:, :3] @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)


def net(out=1, features=20, seed=0):
    return distnet.Sequential([layers.Dense(16, activation="relu"), layers.Dense(out)], input_shape=(features,),
                              seed=seed)


def test_array_dataset_of_any_feature_shape_and_target_kind():
    x = np.random.default_rng(0).random((500, 20))
    y = np.arange(500) % 3
    ds = ArrayDataset(x, y)
    assert (ds.image_shape, ds.num_classes, ds.target) == ((20,), 3, "classes")
    xb, yb = ds.read([4, 1])
    assert xb.shape == (2, 20) and xb.dtype == np.float32 and yb.tolist() == [1, 1]
    reg = ArrayDataset(x - 0.5, y.astype(np.float64) * 1.5)   # negative features are fine off images
    assert (reg.num_classes, reg.target) == (None, "values")
    assert reg.read([2])[1].tolist() == [3.0] and reg.read([2])[1].dtype == np.float32
    assert ArrayDataset(np.zeros((4, 2, 3, 5, 1)), np.zeros(4, np.int64)).image_shape == (2, 3, 5, 1)
    with pytest.raises(DataError, match="labels: Expect: finite targets"):
        ArrayDataset(x, np.where(y == 2, np.nan, 1.0))
    with pytest.raises(DataError, match="Expect: finite values"):
        ArrayDataset(np.full((3, 2), np.inf), np.zeros(3))
    with pytest.raises(DataError, match="images: Expect: float values in \\[0, 1\\]"):   # images as before
        ArrayDataset(np.full((3, 4, 4), 2.0), np.zeros(3, np.int64))
    with pytest.raises(DataError, match="num_classes: Expect: None with float targets"):
        ArrayDataset(x, y.astype(float), num_classes=3)


def test_metric_follows_the_task():
    assert metric_for("mse", "values") == Metric("mae")
    assert metric_for("sparse_categorical_crossentropy") == Metric("accuracy", 0.0)
    assert metric_for("sigmoid_cross_entropy") == Metric("accuracy", 0.0)       # logits: threshold 0
    assert metric_for("binary_crossentropy") == Metric("accuracy", 0.5)         # probabilities: 0.5
    # Float 0./1. labels of a sigmoid and one-hot floats stay a classification.
    assert metric_for("sigmoid_cross_entropy", "values") == Metric("accuracy", 0.0)
    assert metric_for("categorical_crossentropy", "values") == Metric("accuracy", 0.0)
    assert metric_for(lambda y, z, reduction: None, "values") == Metric("mae")   # a callable: by the targets
    onehot = np.eye(3)[[2, 0, 1]]
    assert Metric("accuracy").total(np.array([[0.0, 0.1, 3.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), onehot) == 2
    out = np.array([[0.3], [-0.2], [0.7]])
    assert Metric("accuracy", 0.0).total(out, np.array([1, 0, 0])) == 2
    assert Metric("accuracy", 0.5).total(out, np.array([1, 0, 0])) == 1
    assert Metric("mae").total(out, np.array([0.0, 0.0, 1.0])) == pytest.approx(0.3 + 0.2 + 0.3)
    assert Metric("accuracy").total(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([1, 1])) == 1


@pytest.mark.parametrize("loss", ["mean_squared_error", "mae", "huber"])
def test_regression_through_the_trainer(loss):
    x, y = regression(400, 0)
    xt, yt = regression(100, 1)
    t = Trainer(net(), loss, distnet.optimizers.Adam(0.02), (x, y), eval_data=(xt, yt), global_batch_size=50,
                steps=120, eval_every=60)
    h = t.fit(verbose=0)
    assert "accuracy" not in h.history and "test_accuracy" not in h.history   # no argmax on a regression
    assert len(h.history["mae"]) == 120 and len(h.history["test_mae"]) == 2
    assert h.history["test_mae"][-1] < 0.3 * h.history["mae"][0]   # it learned: far below the first step's
    result = t.evaluate((xt, yt))
    pred = t.model.predict(xt, batch_size=64)[:, 0]
    assert result["mae"] == pytest.approx(float(np.mean(np.abs(pred - yt))), rel=1e-5)
    if loss == "mean_squared_error":
        assert result["loss"] == pytest.approx(float(np.mean((pred - yt) ** 2)), rel=1e-5)


@pytest.mark.parametrize("loss, last", [("sigmoid_cross_entropy", None), ("binary_crossentropy", "sigmoid")])
def test_binary_classification_through_the_trainer(loss, last):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 5)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    model = distnet.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(1, activation=last)],
                               input_shape=(5,), seed=0)
    t = Trainer(model, loss, distnet.optimizers.Adam(0.03), (x[:500], y[:500]), eval_data=(x[500:], y[500:]),
                global_batch_size=50, steps=100)
    h = t.fit(verbose=0)
    out = model.predict(x[500:])[:, 0]
    right = (out > (0.5 if last else 0.0)) == (y[500:] == 1)
    assert h.history["test_accuracy"][-1] == pytest.approx(right.mean())
    assert h.history["test_accuracy"][-1] > 0.9


def test_generated_tabular_data_is_deterministic():
    a, b = load_synthetic("tabular_regression"), load_synthetic("tabular_regression")
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert a.train.target == "values" and a.train.image_shape == (8,) and len(a.train) == 4000
    binary = load_synthetic("tabular_binary")
    assert binary.train.num_classes == 2 and 0.3 < binary.train.labels.mean() < 0.7
    with pytest.raises(DataError, match="tabular_regression"):
        load_synthetic("tabular")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tabular_job_trains_and_evaluates_with_mae(capsys, tmp_path):
    from distnet.training.metrics import read_metrics

    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", str(EXAMPLE), "--run-dir", str(run_dir), "--progress", "plain",
                         "--set", "train.epochs=2", "--set", "train.eval_every=36")
    assert code == exit_status.OK, err
    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    assert evals and all("test_mae" in r and "val_mae" in r and "test_accuracy" not in r for r in evals)
    assert "test mae" in out and "accuracy" not in out
    code, out, err = run(capsys, "eval", str(run_dir), "--json")
    assert code == exit_status.OK, err
    result = json.loads(out)
    assert result["mae"] == pytest.approx(evals[-1]["test_mae"], abs=1e-9) and "accuracy" not in result


def test_binary_job_with_sigmoid_cross_entropy(capsys, tmp_path):
    from distnet.training.metrics import read_metrics

    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", str(EXAMPLE), "--run-dir", str(run_dir), "--progress", "none",
                       "--set", "data.name=tabular_binary", "--set", "loss.type=sigmoid_cross_entropy",
                       "--set", "train.epochs=3")
    assert code == exit_status.OK, err
    last = [r for r in read_metrics(run_dir) if r["kind"] == "eval"][-1]
    assert last["test_accuracy"] > 0.75 and "test_mae" not in last


@pytest.mark.parametrize("overrides, message", [
    (["model.layers.2.units=3"], "one prediction per target: Expect: 1 Actual: 3"),
    (["loss.type=sparse_softmax_cross_entropy"], "float targets \\(a regression\\)"),
    (["data.name=tabular_binary"], "regression loss but the data have integer class labels"),
    (["data.name=tabular_binary", "loss.type=sigmoid_cross_entropy", "model.layers.2.units=2"],
     "sigmoid_cross_entropy is for two classes with one output unit"),
])
def test_a_loss_or_width_that_does_not_fit_the_targets_is_refused(overrides, message):
    from distnet.jobs.config import load_job
    from distnet.jobs.job import load_data

    cfg = load_job(EXAMPLE, overrides)
    with pytest.raises(ConfigError, match=message):
        load_data(cfg)


def test_predict_and_onnx_export_of_a_regression_and_a_binary_job(capsys, tmp_path):
    import onnxruntime

    from distnet.jobs.predict import predict

    for data, loss in (("tabular_regression", "mean_squared_error"), ("tabular_binary", "sigmoid_cross_entropy")):
        run_dir = tmp_path / data
        code, _, err = run(capsys, "train", str(EXAMPLE), "--run-dir", str(run_dir), "--progress", "none",
                           "--set", f"data.name={data}", "--set", f"loss.type={loss}", "--set", "train.epochs=2")
        assert code == exit_status.OK, err
        test = load_synthetic(data).test
        inputs = tmp_path / f"{data}.npy"
        np.save(inputs, test.images[:50])
        pred = predict(run_dir, inputs, batch_size=16)
        onnx_file = tmp_path / f"{data}.onnx"
        assert run(capsys, "export", str(run_dir), "-o", str(onnx_file))[0] == exit_status.OK
        (logits,) = onnxruntime.InferenceSession(str(onnx_file)).run(["logits"], {"images": test.images[:50]})
        if data == "tabular_regression":
            assert pred.task == "values" and pred.accuracy is None and pred.labels.shape == (50,)
            np.testing.assert_allclose(pred.labels, logits[:, 0], rtol=1e-5, atol=1e-5)
            # Trained two epochs: already far better than predicting the mean.
            assert np.mean((pred.labels - test.labels[:50]) ** 2) < 0.5 * np.var(test.labels[:50])
        else:
            p = 1 / (1 + np.exp(-logits[:, 0].astype(np.float64)))
            assert pred.task == "binary" and pred.probabilities.shape == (50, 2)
            np.testing.assert_allclose(pred.probabilities[:, 1], p, rtol=1e-5, atol=1e-6)
            assert pred.labels.tolist() == (logits[:, 0] > 0).astype(int).tolist()


@pytest.mark.parametrize("loss, metric, ok", [
    ("mean_squared_error", "val_mae", True), ("mean_squared_error", "val_accuracy", False),
    ("sparse_softmax_cross_entropy", "val_accuracy", True), ("sparse_softmax_cross_entropy", "val_mae", False),
    ("huber", "ema_val_mae", True), ("huber", "val_loss", True)])
def test_early_stopping_and_keep_best_choose_on_the_tasks_metric(loss, metric, ok):
    from distnet.jobs.config import load_job

    overrides = [f"loss.type={loss}", f"train.early_stopping.metric={metric}", f"checkpoint.keep_best={metric}"]
    if metric.startswith("ema_"):   # an EMA metric needs the EMA (the example job has none)
        with pytest.raises(ConfigError, match=r"early_stopping.metric: Expect: an \[ema\] section"):
            load_job(EXAMPLE, overrides)
        overrides.append("ema.decay=0.99")
    if ok:
        cfg = load_job(EXAMPLE, overrides)
        assert cfg.train.early_stopping["metric"] == cfg.checkpoint.keep_best == metric
    else:
        with pytest.raises(ConfigError, match=f"early_stopping.metric.*{metric}"):
            load_job(EXAMPLE, overrides)
