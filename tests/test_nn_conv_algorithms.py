"""conv2d's FFT and Winograd algorithms: the same convolution as im2col + GEMM.

Known values: TensorFlow 2.21's ``tf.nn.conv2d`` (float64, CPU) and its two
gradients for two fixed inputs, recorded once (inputs ``linspace`` as below,
upstream gradient ``linspace(-1, 1)`` over the output).  Then every geometry the
algorithms accept against the direct algorithm, float64 gradient checks, the
float32 accuracy bound of the module docs (1e-5 of the output's largest
magnitude), the errors, and the per-layer choice (tests/mpi_scripts/conv_choice.py
runs it under mpiexec).
"""
import numpy as np
import pytest

import distnet
from distnet import layers, nn
from distnet.distributed.single import SingleCommunicator
from distnet.errors import InvalidArgumentError
from distnet.gradcheck import check_gradients
from distnet.nn import conv_choice

from mpi_util import run_script

#: TF 2.21, case A: x linspace(-1, 1) [1, 4, 4, 2], w linspace(-0.5, 0.5) [3, 3, 2, 2], SAME.
#: Case B: x [1, 6, 5, 2], w [5, 5, 2, 1], SAME.  Flattened in C order.
TF_A_Y = [
    -0.7152073733, -0.8626728111, -0.4350230415, -0.6341013825, -0.1917050691, -0.3465437788,
    0.0811059908, -0.0073732719, 1.2718894009, 1.1391705069, 2.4, 2.2341013825, 2.3668202765,
    2.267281106, 1.5815668203, 1.5373271889, 1.5373271889, 1.5815668203, 2.267281106, 2.3668202765,
    2.2341013825, 2.4, 1.1391705069, 1.2718894009, -0.0073732719, 0.0811059908, -0.3465437788,
    -0.1917050691, -0.6341013825, -0.4350230415, -0.8626728111, -0.7152073733
]
TF_A_DX = [
    0.9474654378, 0.6525345622, 0.7502304147, 0.3520737327, 0.4405529954, 0.130875576, 0.0626728111,
    -0.1142857143, -1.0562211982, -1.3216589862, -2.1262672811, -2.4580645161, -2.1926267281,
    -2.3917050691, -1.4986175115, -1.5870967742, -1.5870967742, -1.4986175115, -2.3917050691,
    -2.1926267281, -2.4580645161, -2.1262672811, -1.3216589862, -1.0562211982, -0.1142857143,
    0.0626728111, 0.130875576, 0.4405529954, 0.3520737327, 0.7502304147, 0.6525345622, 0.9474654378
]
TF_A_DW = [
    0.7710718002, 0.5650364204, 0.9396462019, 0.7710718002, 1.5941727367, 1.3694068678, 1.7689906348,
    1.5941727367, 1.3704474506, 1.2393340271, 1.4640998959, 1.3704474506, 4.0915712799, 4.0166493236,
    4.1165452653, 4.0915712799, 5.6774193548, 5.6441207076, 5.6441207076, 5.6774193548, 4.0915712799,
    4.1165452653, 4.0166493236, 4.0915712799, 1.3704474506, 1.4640998959, 1.2393340271, 1.3704474506,
    1.5941727367, 1.7689906348, 1.3694068678, 1.5941727367, 0.7710718002, 0.9396462019, 0.5650364204,
    0.7710718002
]
TF_B_Y = [
    -1.6738152888, -1.7281217572, -1.5582843307, -0.8979591837, -0.4285714286, 0.7291594604,
    1.4223452093, 2.3037011415, 2.0864752681, 1.7253545486, 3.9207886544, 5.5136630924, 7.2033898305,
    5.7903839502, 4.3358699412, 4.3358699412, 5.7903839502, 7.2033898305, 5.5136630924, 3.9207886544,
    1.7253545486, 2.0864752681, 2.3037011415, 1.4223452093, 0.7291594604, -0.4285714286, -0.8979591837,
    -1.5582843307, -1.7281217572, -1.6738152888
]
TF_B_DX = [
    0.9067558058, 0.7990851513, 0.948627727, 0.8135116115, 0.8743842365, 0.7160450387, 0.5179451091,
    0.3997185081, 0.260731879, 0.1783954961, -0.318085855, -0.4194229416, -0.6586910626, -0.7825475018,
    -1.0978184377, -1.2385643913, -1.0077410274, -1.109078114, -0.8416608023, -0.90921886, -1.95460943,
    -2.0285010556, -2.7586206897, -2.8430682618, -3.6154116819, -3.7033779029, -2.9134412386,
    -2.96973962, -2.1868402533, -2.2185080929, -2.2185080929, -2.1868402533, -2.96973962, -2.9134412386,
    -3.7033779029, -3.6154116819, -2.8430682618, -2.7586206897, -2.0285010556, -1.95460943, -0.90921886,
    -0.8416608023, -1.109078114, -1.0077410274, -1.2385643913, -1.0978184377, -0.7825475018,
    -0.6586910626, -0.4194229416, -0.318085855, 0.1783954961, 0.260731879, 0.3997185081, 0.5179451091,
    0.7160450387, 0.8743842365, 0.8135116115, 0.948627727, 0.7990851513, 0.9067558058
]
TF_B_DW = [
    -0.3132670953, -0.1449444769, 0.065458796, 0.2711864407, 0.6545879603, 0.8883693746, 0.8322618352,
    1.0005844535, 0.8369374635, 0.9491525424, 2.6329631794, 2.755698422, 3.8807714787, 4.0210403273,
    5.2746931619, 5.4208065459, 4.3717124489, 4.4652250146, 3.3693746347, 3.421975453, 6.0876680304,
    6.129748685, 8.2805376973, 8.308591467, 10.5084745763, 10.5084745763, 8.308591467, 8.2805376973,
    6.129748685, 6.0876680304, 3.421975453, 3.3693746347, 4.4652250146, 4.3717124489, 5.4208065459,
    5.2746931619, 4.0210403273, 3.8807714787, 2.755698422, 2.6329631794, 0.9491525424, 0.8369374635,
    1.0005844535, 0.8322618352, 0.8883693746, 0.6545879603, 0.2711864407, 0.065458796, -0.1449444769,
    -0.3132670953
]

CASES = {"A": ((1, 4, 4, 2), (3, 3, 2, 2), TF_A_Y, TF_A_DX, TF_A_DW),
         "B": ((1, 6, 5, 2), (5, 5, 2, 1), TF_B_Y, TF_B_DX, TF_B_DW)}


def _linspace(shape, lo, hi):
    return np.linspace(lo, hi, int(np.prod(shape))).reshape(shape)


def _run(x, w, algorithm, g=None, padding="SAME"):
    """Output and the two gradients (upstream ``g``, default ones) of conv2d with ``algorithm``."""
    xv, wv = distnet.Variable(x, name="x"), distnet.Variable(w, name="w")
    y = nn.conv2d(xv, wv, 1, padding, algorithm=algorithm)
    g = np.ones(y.shape, y.dtype) if g is None else g.astype(y.dtype)
    dx, dw = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [xv, wv])
    return y.numpy(), np.asarray(dx), np.asarray(dw)


@pytest.mark.parametrize("algorithm,case", [("gemm", "A"), ("fft", "A"), ("winograd", "A"),
                                            ("gemm", "B"), ("fft", "B")])   # Winograd: 3x3 only
def test_known_values_from_tensorflow(algorithm, case):
    xs, ws, ty, tdx, tdw = CASES[case]
    x, w = _linspace(xs, -1, 1), _linspace(ws, -0.5, 0.5)
    y0 = nn.conv2d(distnet.constant(x), distnet.constant(w), 1, "SAME").numpy()
    y, dx, dw = _run(x, w, algorithm, _linspace(y0.shape, -1, 1))
    np.testing.assert_allclose(y.reshape(-1), ty, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dx.reshape(-1), tdx, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dw.reshape(-1), tdw, rtol=1e-9, atol=1e-9)


# (n, h, w, c, o, kh, kw, padding): odd and even sizes, kernels wider than tall, a kernel
# as large as the input, one input channel, VALID and SAME.
FFT_GEOMETRIES = [
    (2, 7, 6, 3, 4, 3, 3, "SAME"), (2, 8, 9, 2, 3, 5, 4, "VALID"), (1, 5, 5, 1, 2, 5, 5, "SAME"),
    (3, 6, 6, 2, 2, 1, 1, "SAME"), (2, 5, 7, 2, 3, 2, 3, "SAME"), (1, 4, 4, 2, 2, 4, 4, "VALID"),
    (2, 9, 4, 3, 2, 1, 3, "VALID"), (2, 6, 5, 2, 2, 6, 5, "SAME"),
]
WINOGRAD_GEOMETRIES = [
    (2, 7, 6, 3, 4, 3, 3, "SAME"), (2, 8, 9, 2, 3, 3, 3, "VALID"), (1, 3, 3, 1, 2, 3, 3, "VALID"),
    (2, 4, 5, 2, 2, 3, 3, "SAME"), (1, 1, 1, 2, 3, 3, 3, "SAME"), (2, 6, 6, 1, 1, 3, 3, "VALID"),
]
ALL = [("fft", g) for g in FFT_GEOMETRIES] + [("winograd", g) for g in WINOGRAD_GEOMETRIES]


@pytest.mark.parametrize("algorithm,geometry", ALL)
def test_matches_the_direct_algorithm_float64(algorithm, geometry):
    n, h, wd, c, o, kh, kw, padding = geometry
    rng = np.random.default_rng(hash(geometry) % 2**32)
    x, w = rng.standard_normal((n, h, wd, c)), rng.standard_normal((kh, kw, c, o))
    ref = _run(x, w, "gemm", padding=padding)
    g = rng.standard_normal(ref[0].shape)
    ref = _run(x, w, "gemm", g, padding)
    got = _run(x, w, algorithm, g, padding)
    for r, a in zip(ref, got):
        assert a.shape == r.shape and a.dtype == np.float64
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10 * np.abs(r).max())


@pytest.mark.parametrize("algorithm,geometry", ALL)
def test_gradients_float64(algorithm, geometry):
    n, h, wd, c, o, kh, kw, padding = geometry
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((n, h, wd, c)), rng.standard_normal((kh, kw, c, o))
    check_gradients(lambda a, b: nn.conv2d(a, b, 1, padding, algorithm=algorithm), [x, w])


@pytest.mark.parametrize("algorithm,shape", [
    ("fft", (8, 14, 14, 32, 64, 5)),    # the 2-conv net's second layer, at batch 8
    ("fft", (4, 28, 28, 1, 32, 5)),     # its first layer
    ("fft", (2, 32, 32, 8, 8, 7)),
    ("winograd", (4, 28, 28, 32, 32, 3)),
    ("winograd", (2, 15, 17, 16, 8, 3)),
])
def test_float32_within_1e5_of_the_output_scale(algorithm, shape):
    """The bound of the module docs: float32 results of the algorithm differ from the
    float64 direct sum by at most 1e-5 of the largest magnitude of each result."""
    n, hw, _, c, o, k = shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, hw, shape[2], c))
    w = rng.standard_normal((k, k, c, o)) / np.sqrt(k * k * c)
    ref = _run(x, w, "gemm")
    g = rng.standard_normal(ref[0].shape)
    ref = _run(x, w, "gemm", g)
    got = _run(x.astype(np.float32), w.astype(np.float32), algorithm, g)
    for r, a in zip(ref, got):
        assert a.dtype == np.float32
        err = np.abs(a - r).max() / np.abs(r).max()
        assert err < 1e-5, f"{algorithm}: relative error {err:.3g}"


def test_only_the_requested_gradient_is_computed():
    rng = np.random.default_rng(3)
    x = distnet.constant(rng.standard_normal((2, 6, 6, 3)))
    w = distnet.Variable(rng.standard_normal((3, 3, 3, 2)), name="w")
    for algorithm in ("fft", "winograd"):
        (dw,) = distnet.gradients(distnet.reduce_sum(nn.conv2d(x, w, 1, "SAME", algorithm=algorithm)), [w])
        (ref,) = distnet.gradients(distnet.reduce_sum(nn.conv2d(x, w, 1, "SAME")), [w])
        np.testing.assert_allclose(dw, ref, rtol=1e-10)


def test_errors_name_the_algorithm_and_what_it_needs():
    x, w = distnet.constant(np.ones((1, 6, 6, 2))), distnet.constant(np.ones((5, 5, 2, 3)))
    with pytest.raises(InvalidArgumentError, match=r"unknown algorithm.*'gemm', 'fft', 'winograd'.*'direct'"):
        nn.conv2d(x, w, 1, "SAME", algorithm="direct")
    with pytest.raises(InvalidArgumentError, match=r"'fft' needs strides and dilations 1.*strides \(2, 2\)"):
        nn.conv2d(x, w, 2, "SAME", algorithm="fft")
    with pytest.raises(InvalidArgumentError, match=r"'fft' needs.*dilations \(2, 2\)"):
        nn.conv2d(x, w, 1, "SAME", dilations=2, algorithm="fft")
    with pytest.raises(InvalidArgumentError, match=r"'winograd' needs .*3x3 kernel.*kernel \(5, 5\)"):
        nn.conv2d(x, w, 1, "SAME", algorithm="winograd")


def _model():
    return distnet.Sequential([
        layers.Conv2D(4, 5, padding="same", activation="relu"),
        layers.Conv2D(4, 3, padding="same"),
        layers.Conv2D(4, 3, padding="same"),   # the same shapes as the layer before
        layers.Conv2D(3, 3, strides=2, padding="valid"),
        layers.Flatten(), layers.Dense(2),
    ], input_shape=(9, 9, 2), seed=0)


def test_forced_mode_applies_where_it_can_and_says_so():
    model = _model()
    comm = SingleCommunicator()
    plan = conv_choice.choose_conv_algorithms(model, 4, comm, "winograd")
    names = [layer.name for layer in model.layers[:4]]
    assert plan == {names[0]: "gemm", names[1]: "winograd", names[2]: "winograd", names[3]: "gemm"}
    assert [layer.algorithm for layer in model.layers[:4]] == ["gemm", "winograd", "winograd", "gemm"]
    plan = conv_choice.choose_conv_algorithms(model, 4, comm, "fft")
    assert list(plan.values()) == ["fft", "fft", "fft", "gemm"]
    x = np.random.default_rng(0).standard_normal((4, 9, 9, 2)).astype(np.float32)
    y_fft = model(x).numpy()
    conv_choice.choose_conv_algorithms(model, 4, comm, "gemm")
    y_gemm = model(x).numpy()
    assert not np.array_equal(y_fft, y_gemm)   # the plan really changed the arithmetic ...
    np.testing.assert_allclose(y_fft, y_gemm, rtol=1e-5, atol=1e-5 * np.abs(y_gemm).max())   # ... not the result


def test_auto_takes_the_fastest_measured_and_measures_each_shape_once(monkeypatch):
    model = _model()
    calls = []

    def fake(x_shape, w_shape, strides, padding, dtype=np.float32, input_grad=True, **kwargs):
        calls.append((x_shape, w_shape, input_grad))
        times = {"gemm": 3.0, "fft": 2.0}
        if w_shape[:2] == (3, 3) and tuple(strides) == (1, 1):
            times["winograd"] = 1.0
        return times

    monkeypatch.setattr(conv_choice, "time_algorithms", fake)
    monkeypatch.setattr(conv_choice, "MEASURE_MIN_FLOP", 0)   # these layers are small: measure them anyway
    plan = conv_choice.choose_conv_algorithms(model, 7, SingleCommunicator(), "auto")
    assert list(plan.values()) == ["fft", "winograd", "winograd", "fft"]
    # the first layer reads the data: no input gradient in its measurement
    assert calls[0] == ((7, 9, 9, 2), (5, 5, 2, 4), False) and calls[1][2] is True
    assert len(calls) == 3   # the two layers of equal shapes share one measurement


def test_auto_keeps_gemm_on_small_layers_and_on_near_ties(monkeypatch):
    calls = []

    def fake(x_shape, w_shape, strides, padding, dtype=np.float32, input_grad=True, **kwargs):
        calls.append(x_shape)
        return {"gemm": 1.0, "fft": 1.0 / (conv_choice.MARGIN * 0.99)}   # faster, but not by the margin

    monkeypatch.setattr(conv_choice, "time_algorithms", fake)
    # _model()'s layers at batch 7: under MEASURE_MIN_FLOP, never measured (a timing could only add noise)
    assert conv_choice.forward_flop((7, 9, 9, 2), (5, 5, 2, 4), (1, 1), "SAME") == 2 * 7 * 81 * 25 * 2 * 4
    assert set(conv_choice.choose_conv_algorithms(_model(), 7, SingleCommunicator(), "auto").values()) == {"gemm"}
    assert calls == []
    monkeypatch.setattr(conv_choice, "MEASURE_MIN_FLOP", 0)
    assert set(conv_choice.choose_conv_algorithms(_model(), 7, SingleCommunicator(), "auto").values()) == {"gemm"}
    assert len(calls) == 3
    assert conv_choice.pick({"gemm": 1.0, "fft": 0.5, "winograd": 0.9}) == "fft"
    assert conv_choice.pick({"gemm": 1.0, "fft": 1.0 / conv_choice.MARGIN}) == "fft"
    assert conv_choice.pick({"gemm": 0.5, "fft": 1.0}) == "gemm"


def test_apply_plan_and_the_fixed_plan_of_the_deterministic_step():
    model = _model()
    names = [layer.name for layer in model.layers[:4]]
    # No plan (a checkpoint from before plans were stored, or a fresh deterministic run): gemm everywhere.
    assert conv_choice.fixed_plan(model) == dict.fromkeys(names, "gemm")
    plan = conv_choice.fixed_plan(model, {names[0]: "fft", names[1]: "winograd"})
    assert plan == {names[0]: "fft", names[1]: "winograd", names[2]: "gemm", names[3]: "gemm"}
    assert [layer.algorithm for layer in model.layers[:4]] == ["fft", "winograd", "gemm", "gemm"]
    with pytest.raises(InvalidArgumentError, match=r"conv_algorithms\[.*\]: Expect: .* Actual: 'fft'"):
        conv_choice.apply_plan(model, {names[3]: "fft"})   # strides 2: the FFT cannot compute it
    with pytest.raises(InvalidArgumentError, match=r"Expect: one of .* Actual: 'cudnn'"):
        conv_choice.apply_plan(model, {names[0]: "cudnn"})
    with pytest.raises(InvalidArgumentError, match=r"the plan belongs to another model"):
        conv_choice.apply_plan(model, {"conv2d_99": "gemm"})


def _fake_timing(winner):
    def fake(x_shape, w_shape, strides, padding, dtype=np.float32, input_grad=True, **kwargs):
        names = [a for a in ("gemm", "fft", "winograd") if conv_choice.algorithm_applies(a, w_shape[:2], strides,
                                                                                          (1, 1))]
        return {a: (0.1 if a == winner else 1.0) for a in names}
    return fake


def _train(tmp_path, steps, conv_algorithm=None, resume=False, deterministic=False):
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    rng = np.random.default_rng(4)
    data = ArrayDataset(rng.random((32, 9, 9, 2), dtype=np.float32), rng.integers(0, 2, 32), num_classes=2)
    trainer = Trainer(_model(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), data,
                      global_batch_size=8, steps=steps, seed=0, conv_algorithm=conv_algorithm, log_every=1000,
                      checkpoint_dir=str(tmp_path), deterministic=deterministic)
    trainer.fit(resume=resume, verbose=0)
    return trainer, [v.numpy().copy() for v in trainer.all_variables]


def test_a_resumed_auto_run_takes_the_checkpoints_plan_and_is_bitwise_the_uninterrupted_run(tmp_path,
                                                                                             monkeypatch):
    from distnet.checkpoint import load

    monkeypatch.setattr(conv_choice, "MEASURE_MIN_FLOP", 0)
    monkeypatch.setattr(conv_choice, "time_algorithms", _fake_timing("fft"))
    whole, expected = _train(tmp_path / "whole", 6)
    assert list(whole.conv_algorithms.values()) == ["fft", "fft", "fft", "gemm"]
    first, _ = _train(tmp_path / "cut", 3)
    stored = load(sorted((tmp_path / "cut").glob("ckpt-*.h5"))[-1])
    assert stored.conv_algorithms == first.conv_algorithms == whole.conv_algorithms
    # The resumed run's own measurement would now choose winograd/gemm: the checkpoint's plan wins.
    monkeypatch.setattr(conv_choice, "time_algorithms", _fake_timing("winograd"))
    resumed, got = _train(tmp_path / "cut", 6, resume=True)
    assert resumed.conv_algorithms == whole.conv_algorithms
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    # A forced algorithm wins over the checkpoint's plan (debugging a run).
    forced, _ = _train(tmp_path / "cut", 7, conv_algorithm="gemm", resume=True)
    assert set(forced.conv_algorithms.values()) == {"gemm"}


def test_the_deterministic_step_measures_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the deterministic step timed an algorithm")

    monkeypatch.setattr(conv_choice, "MEASURE_MIN_FLOP", 0)
    monkeypatch.setattr(conv_choice, "time_algorithms", fail)
    trainer, _ = _train(tmp_path / "fresh", 2, deterministic=True)
    assert set(trainer.conv_algorithms.values()) == {"gemm"}
    # Resumed, it runs the checkpoint's plan (measured by a default run), still measuring nothing.
    monkeypatch.setattr(conv_choice, "time_algorithms", _fake_timing("fft"))
    first, _ = _train(tmp_path / "cut", 2)
    assert list(first.conv_algorithms.values()) == ["fft", "fft", "fft", "gemm"]
    monkeypatch.setattr(conv_choice, "time_algorithms", fail)
    resumed, _ = _train(tmp_path / "cut", 4, deterministic=True, resume=True)
    assert resumed.conv_algorithms == first.conv_algorithms


def test_time_algorithms_measures_each_algorithm_that_applies():
    times = conv_choice.time_algorithms((2, 6, 6, 3), (3, 3, 3, 4), (1, 1), "SAME", repeats=1)
    assert sorted(times) == ["fft", "gemm", "winograd"] and all(t > 0 for t in times.values())
    times = conv_choice.time_algorithms((2, 6, 6, 3), (3, 3, 3, 4), (2, 2), "SAME", repeats=1)
    assert sorted(times) == ["gemm"]


def test_bad_mode_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match=r"conv_algorithm: Expect: one of 'gemm', 'auto'.*Actual: 'cudnn'"):
        conv_choice.choose_conv_algorithms(_model(), 4, SingleCommunicator(), "cudnn")


def test_trainer_runs_the_chosen_algorithms():
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    rng = np.random.default_rng(4)
    data = ArrayDataset(rng.random((16, 9, 9, 2), dtype=np.float32), rng.integers(0, 2, 16), num_classes=2)
    results = {}
    for mode in ("gemm", "fft"):
        model = _model()
        trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), data,
                          global_batch_size=8, steps=3, seed=0, conv_algorithm=mode, log_every=1000)
        trainer.fit(verbose=0)
        assert trainer.conv_algorithms == {layer.name: layer.algorithm for layer in model.layers[:4]}
        results[mode] = [v.numpy() for v in trainer.variables]
    assert list(trainer.conv_algorithms.values()) == ["fft", "fft", "fft", "gemm"]
    for a, b in zip(results["gemm"], results["fft"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.mpi
@pytest.mark.parametrize("nranks", [2, 3])
def test_every_rank_runs_rank_0s_choice_and_stays_bitwise_equal(tmp_path, nranks):
    res = run_script("conv_choice.py", tmp_path, f"n{nranks}", nprocs=nranks)
    plans, digests = list(res["plans"]), list(res["digests"])
    assert len(plans) == nranks
    assert len(set(plans)) == 1, plans
    # the fake measurement makes rank 0 pick the first applicable algorithm by name: fft
    assert plans[0].split(",")[0].endswith("=fft") and plans[0].split(",")[1].endswith("=fft"), plans[0]
    assert len(set(digests)) == 1, digests


@pytest.mark.mpi
def test_a_run_resumed_on_another_number_of_ranks_keeps_the_plan(tmp_path):
    """2 ranks choose (rank 0: fft) and checkpoint; 3 ranks resume with the checkpoint's plan, not their
    own measurement's, and stay bitwise equal."""
    ckpt = tmp_path / "ckpt"
    first = run_script("conv_choice.py", tmp_path, "first", "--steps", "2", "--ckpt", ckpt, nprocs=2)
    plan = str(first["plans"][0])
    assert plan.split(",")[0].endswith("=fft"), plan
    from distnet.checkpoint import load

    stored = load(sorted(ckpt.glob("ckpt-*.h5"))[-1])
    assert ",".join(f"{k}={v}" for k, v in stored.conv_algorithms.items()) == plan and stored.world_size == 2
    # Rank 0's measurement in the script always chooses fft: store a plan it would never choose.
    from distnet.checkpoint import write_checkpoint

    names = sorted(stored.conv_algorithms)
    stored.conv_algorithms = {names[0]: "winograd", names[1]: "gemm"}
    write_checkpoint(sorted(ckpt.glob("ckpt-*.h5"))[-1], stored)
    third = run_script("conv_choice.py", tmp_path, "resumed", "--steps", "4", "--ckpt", ckpt, "--resume", nprocs=3)
    assert set(third["plans"]) == {f"{names[0]}=winograd,{names[1]}=gemm"}, third["plans"]
    assert len(set(third["digests"])) == 1


def test_job_key_is_validated_and_reaches_the_config():
    from distnet.jobs.config import ConfigError, parse_job

    cfg = parse_job('[train]\nsteps = 10\nconv_algorithm = "auto"\n')
    assert cfg.train.conv_algorithm == "auto"
    assert parse_job("[train]\nsteps = 10\n").train.conv_algorithm is None   # unset: the Trainer's default
    with pytest.raises(ConfigError, match=r"conv_algorithm.*unknown value 'winograde'; did you mean 'winograd'"):
        parse_job("[train]\nsteps = 10\n", overrides=["train.conv_algorithm=winograde"])
