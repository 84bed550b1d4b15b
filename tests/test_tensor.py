"""Tensor, Variable and constant: dtype rules, operators, assignment."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.errors import DTypeError, ShapeError
from distnet.tensor import binary_operands


def test_constant_default_dtypes_follow_tf():
    assert distnet.constant(1.5).dtype == np.float32
    assert distnet.constant([1.0, 2.0]).dtype == np.float32
    assert distnet.constant(3).dtype == np.int32
    assert distnet.constant([[1, 2]]).dtype == np.int32
    assert distnet.constant(True).dtype == np.bool_
    assert distnet.constant(np.ones(2)).dtype == np.float64      # ndarray keeps its dtype
    assert distnet.constant(np.arange(2)).dtype == np.int64
    assert distnet.constant(1.5, dtype="float64").dtype == np.float64
    assert distnet.constant(1.5, dtype="float64").numpy() == 1.5    # no float32 rounding on the way


def test_a_float_never_truncates_silently_into_an_integer_dtype():
    for value in (3.7, [1.0, 2.5], np.nan, np.inf, 1e10, np.array([0.5]), 2.0 ** 31, np.float32(2 ** 31)):
        with pytest.raises(DTypeError, match="Expect: whole numbers in .* use distnet.cast to truncate on purpose"):
            distnet.constant(value, dtype="int32")
    # the first value past the top, which float32/float64 cannot tell from iinfo.max
    for value, dtype in ((2.0 ** 63, "int64"), (np.float32(2 ** 63), "int64"), (2.0 ** 64, "uint64"),
                         (256.0, "uint8"), (-2.0 ** 31 - 1, "int32")):
        with pytest.raises(DTypeError, match="whole numbers"):
            distnet.constant(value, dtype=dtype)
    assert distnet.constant(-2.0 ** 31, dtype="int32").numpy() == -2 ** 31
    assert distnet.constant(2.0 ** 31 - 1, dtype="int32").numpy() == 2 ** 31 - 1
    assert distnet.constant(255.0, dtype="uint8").numpy() == 255
    with pytest.raises(DTypeError, match=r"to uint8: Expect: whole numbers in \[0, 255\] Actual: \[-1.0\]"):
        distnet.constant(-1.0, dtype="uint8")
    with pytest.raises(DTypeError, match="whole numbers"):
        distnet.Variable(np.full(3, 0.25), name="v", dtype="int64")
    # whole numbers that fit convert; distnet.cast still truncates on purpose (as tf.cast)
    assert distnet.constant(3.0, dtype="int32").numpy() == 3
    np.testing.assert_array_equal(distnet.constant(np.array([1.0, -2.0]), dtype="int64").numpy(), [1, -2])
    np.testing.assert_array_equal(distnet.cast(distnet.constant([3.7, -3.7]), "int32").numpy(), [3, -3])


def test_constant_rejects_objects():
    with pytest.raises(DTypeError, match="Python objects"):
        distnet.constant([object()])


def test_tensor_array_protocol_and_properties():
    t = distnet.constant([[1.0, 2.0, 3.0]], name="t")
    assert t.shape == (1, 3) and t.ndim == 2 and t.size == 3 and len(t) == 1
    assert t.numpy() is t.data
    np.testing.assert_array_equal(np.asarray(t), [[1.0, 2.0, 3.0]])
    assert "name='t'" in repr(t) and "float32" in repr(t)
    assert float(distnet.constant(2.5)) == 2.5 and int(distnet.constant(7)) == 7
    assert distnet.constant([4.0]).item() == 4.0
    with pytest.raises(TypeError):
        len(distnet.constant(1.0))


def test_truth_value_of_a_non_scalar_is_ambiguous():
    assert bool(distnet.constant(1.0) > 0)
    with pytest.raises(ValueError, match=r"ambiguous.*reduce_any"):
        bool(distnet.constant([1.0, 2.0]) > 0)


def test_tensors_are_hashable_by_identity():
    a, b = distnet.constant(1.0), distnet.constant(1.0)
    assert len({a, b}) == 2 and a == a and a != b


def test_operators_build_the_same_graph_as_the_functions(rng):
    xv, yv = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)) + 3.0
    x, y = distnet.constant(xv), distnet.constant(yv)
    pairs = [
        (x + y, xv + yv), (x - y, xv - yv), (x * y, xv * yv), (x / y, xv / yv),
        (-x, -xv), (abs(x), np.abs(xv)), (y ** 2.0, yv ** 2), (x @ y.T, xv @ yv.T),
        (1.0 + x, 1 + xv), (1.0 - x, 1 - xv), (2.0 * x, 2 * xv), (1.0 / y, 1 / yv),
        (x[0], xv[0]), (x.T, xv.T), (x.reshape(3, 2), xv.reshape(3, 2)),
    ]
    for t, ref in pairs:
        assert isinstance(t, distnet.Tensor)
        np.testing.assert_allclose(t.numpy(), ref, rtol=1e-15)


def test_numpy_array_on_the_left_defers_to_tensor():
    x = distnet.constant([1.0, 2.0])
    for out in (np.array([1.0, 1.0], np.float32) + x, np.float32(3.0) * x, np.ones(2, np.float32) - x):
        assert isinstance(out, distnet.Tensor) and out.dtype == np.float32


def test_binary_operands_conversion_rules():
    f32 = distnet.constant([1.0])
    a, b = binary_operands(f32, 2, "op")
    assert b.dtype == np.float32                    # the number takes the tensor's dtype
    a, b = binary_operands(0.5, np.ones(1), "op")   # two non-tensors: the second follows the first
    assert a.dtype == b.dtype
    with pytest.raises(DTypeError, match=r"op: .*Actual: float32 and float64"):
        binary_operands(f32, distnet.constant(np.ones(1)), "op")


def test_variable_owns_a_copy_and_assigns_in_place():
    init = np.array([1.0, 2.0], dtype=np.float32)
    v = distnet.Variable(init, name="w")
    init[0] = 99.0
    assert v.numpy()[0] == 1.0                      # copied
    buf = v.data
    v.assign([3.0, 4.0])
    assert v.data is buf and v.numpy().tolist() == [3.0, 4.0]
    v.assign_add(np.array([1.0, 1.0]))
    v.assign_sub(distnet.constant([0.5, 0.5]))
    assert v.data is buf and v.numpy().tolist() == [3.5, 4.5]
    assert v.trainable and v.name == "w"
    snap = v.value()
    v.assign([0.0, 0.0])
    assert snap.numpy().tolist() == [3.5, 4.5]      # value() is a snapshot


def test_variable_assign_shape_mismatch_and_dtype():
    v = distnet.Variable([[1.0, 2.0]], name="dense/kernel")
    with pytest.raises(ShapeError, match=r"dense/kernel.*Expect: shape \(1, 2\) Actual: shape \(2,\)"):
        v.assign([1.0, 2.0])
    with pytest.raises(DTypeError, match="numeric"):
        distnet.Variable(np.array(["a"]))
    assert distnet.Variable(0, trainable=False).dtype == np.int32
    assert "trainable=False" in repr(distnet.Variable(0, trainable=False))


def test_variable_in_expressions_is_a_tensor():
    v = distnet.Variable([1.0, 2.0])
    out = v * 2.0
    assert type(out) is distnet.Tensor
    (g,) = distnet.gradients(distnet.reduce_sum(out), [v])
    np.testing.assert_array_equal(g, [2.0, 2.0])


def test_python_ints_are_int32_unless_a_value_does_not_fit():
    # TF1: int32 by default, int64 for a Python int beyond int32's range.
    assert distnet.constant(5).dtype == np.int32
    assert distnet.constant([1, -(2 ** 31)]).dtype == np.int32
    big = distnet.constant([1, 2 ** 40])
    assert big.dtype == np.int64 and big.numpy()[1] == 2 ** 40
    assert distnet.constant(-(2 ** 31) - 1).dtype == np.int64


@pytest.mark.parametrize("value, dtype", [(2 ** 40, "int32"), (300, "uint8"), ([-1, 2], "uint16")])
def test_an_integer_that_does_not_fit_the_requested_dtype_is_an_error(value, dtype):
    with pytest.raises(DTypeError, match=rf"cannot convert to {dtype}: Expect: values in"):
        distnet.constant(value, dtype=dtype)
    assert distnet.constant(7, dtype=dtype).numpy() == 7
