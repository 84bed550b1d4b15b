"""TF1 variables in graph mode: ``tf.Variable``, ``get_variable`` with
variable scopes, initializers, and the initializer ops.

A graph ``Variable`` is a tensor whose value, in a session, is a native
:class:`distnet.Variable` named exactly as TF1 names it (``Variable``,
``Variable_1``, ``conv1/weights``): optimizers, moving averages and
checkpoints key their state by that name.  Its initializer evaluates the
initial value once; when the graph runs data parallel (a
:class:`~distnet.compat.v1.distributed.DistributedOptimizer` was made) every
rank then takes rank 0's value.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import numpy as np

import distnet
from distnet.compat.v1 import array_ops
from distnet.compat.v1.errors import FailedPreconditionError
from distnet.compat.v1.graph import (
    GraphKeys, Operation, Tensor, TensorShape, as_dtype, as_shape, build, convert_to_tensor, get_default_graph, leaf,
    no_output, probes_for,
)
from distnet.errors import InvalidArgumentError
from distnet.model.initializers import compute_fans
from distnet.tensor import Tensor as EagerTensor, Variable as NativeVariable


class Variable(Tensor):
    """TF1's ``tf.Variable(initial_value, trainable=True, name=None, dtype=None)``.

    Example:
      >>> w = tf.Variable(tf.truncated_normal([784, 10], stddev=0.1))
      >>> w.name, w.shape
      ('Variable:0', TensorShape([Dimension(784), Dimension(10)]))
    """

    def __init__(self, initial_value: Any = None, trainable: bool = True, collections: Any = None,
                 validate_shape: bool = True, caching_device: Any = None, name: str | None = None,
                 variable_def: Any = None, dtype: Any = None, expected_shape: Any = None,
                 import_scope: Any = None, constraint: Any = None, use_resource: Any = None,
                 synchronization: Any = None, aggregation: Any = None):
        if initial_value is None:
            raise ValueError("initial_value must be specified.")
        graph = get_default_graph()
        with graph.control_dependencies(None):
            if callable(initial_value):
                initial_value = initial_value()
            init = convert_to_tensor(initial_value, dtype=None)
            dtype = as_dtype(dtype)
            if dtype is not None and init.dtype != dtype:
                init = array_ops.cast(init, dtype) if isinstance(initial_value, Tensor) else \
                    convert_to_tensor(initial_value, dtype=dtype)
            if validate_shape and not init.shape.is_fully_defined():
                raise ValueError(f"initial_value must have a shape specified: {init!r}")
            self.trainable = bool(trainable)
            self._initial_value = init
            var = self

            def read(run, values):
                st = run.session.resource(("var", var))
                if st is None:
                    raise FailedPreconditionError(
                        f"Attempting to use uninitialized value {var.op.name}: Expect: "
                        "sess.run(tf.global_variables_initializer()) (or a Saver restore) before using it")
                return snapshot(run, var.op, st)

            op = Operation("VariableV2", [], read, name=name or "Variable")
            op._volatile = True
            Tensor.__init__(self, op, init.dtype, init.shape, probes_for(init.shape, init.dtype))
            self._initializer_op = no_output(
                "Assign", lambda run, values: var._store(run, values[0], broadcast=True), [init],
                name=f"{op.name}/Assign")
        if collections is None:
            collections = [GraphKeys.GLOBAL_VARIABLES]
        collections = list(collections)
        if self.trainable and GraphKeys.TRAINABLE_VARIABLES not in collections:
            collections.append(GraphKeys.TRAINABLE_VARIABLES)
        for c in collections:
            graph.add_to_collection(c, self)
        graph._variables_by_name[op.name] = self

    # -- the value in a session ----------------------------------------------------
    def _storage(self, session) -> NativeVariable | None:
        return session.resource(("var", self))

    def _store(self, run, value: EagerTensor, broadcast: bool = False) -> NativeVariable:
        """Set the session's value (creating the native Variable on first use)."""
        session = run.session
        arr = value.data if isinstance(value, EagerTensor) else np.asarray(value)
        if tuple(arr.shape) != tuple(self.shape.as_list()):
            raise InvalidArgumentError(
                f"Assign requires shapes of both tensors to match. lhs shape= {self.shape.as_list()} "
                f"rhs shape= {list(arr.shape)} (variable {self.op.name})")
        st = session.resource(("var", self))
        if st is None:
            st = NativeVariable(arr, name=self.op.name, trainable=self.trainable, dtype=self.dtype)
            session.set_resource(("var", self), st)
        else:
            st.assign(arr)
        comm = self.graph.multi_rank_comm()
        if broadcast and comm is not None:
            comm.bcast_(st.data, root=0)
        return st

    # -- TF1 API ---------------------------------------------------------------------
    @property
    def initializer(self) -> Operation:
        return self._initializer_op

    @property
    def initial_value(self) -> Tensor:
        return self._initial_value

    def initialized_value(self) -> Tensor:
        """The value, running the initializer first if the variable is not initialized yet."""
        var = self

        def compute(run, values):
            if var._storage(run.session) is None:
                run.evaluate(var.initializer)
            return distnet.constant(var._storage(run.session).data.copy())

        return leaf("InitializedValue", compute, self.dtype, self.shape, self._probes,
                    name=f"{self.op.name}/initialized_value")

    def assign(self, value: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return assign(self, value, name=name)

    def assign_add(self, delta: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return assign_add(self, delta, name=name)

    def assign_sub(self, delta: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return assign_sub(self, delta, name=name)

    def read_value(self) -> Tensor:
        return build("Identity", lambda v: v, self, _name=f"{self.op.name}/read")

    value = read_value

    def load(self, value: Any, session=None) -> None:
        from distnet.compat.v1.session import _Run, _session_or_default

        sess = _session_or_default(session, "Variable.load")
        self._store(_Run(sess, {}), distnet.constant(np.asarray(value, dtype=self.dtype)))

    def __repr__(self) -> str:
        return f"<tf.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}_ref>"

    __hash__ = Tensor.__hash__


def snapshot(run, op: Operation, st: NativeVariable) -> EagerTensor:
    """The value of variable ``op`` in ``run``: a copy of its storage ``st``,
    one per version.

    A copy, because an update in the same call (a second ``minimize``
    fetched with the first: a GAN's two steps) writes the storage in place,
    and the ops computed before it must keep the values they read, as TF1
    computes every gradient of a call from the same forward values.  A read
    after the update (``sess.run([train_op, w])``) gets a new copy.
    """
    taken = run.snapshots.setdefault(op, [])
    if taken and taken[-1][0] is st and taken[-1][1] == st.version:
        return taken[-1][2]
    value = EagerTensor._from_op(np.array(st.data, copy=True), None, ())
    taken.append((st, st.version, value))
    return value


def _assign_op(op_type: str, ref: Variable, value: Any, name: str | None, update) -> Tensor:
    if not isinstance(ref, Variable):
        raise TypeError(f"{op_type}: Expect: a tf.Variable as ref Actual: {type(ref).__name__}")
    value = convert_to_tensor(value, dtype=None)

    def compute(run, values):
        st = ref._storage(run.session)
        new = values[0].data
        if update is not None:
            if st is None:
                raise FailedPreconditionError(f"Attempting to use uninitialized value {ref.op.name}")
            new = update(st.data, np.asarray(new, dtype=st.dtype))
        st = ref._store(run, EagerTensor._from_op(np.asarray(new, dtype=ref.dtype), None, ()))
        return distnet.constant(st.data.copy())

    return leaf(op_type, compute, ref.dtype, ref.shape, ref._probes, name=name or op_type, inputs=[value])


def assign(ref: Variable, value: Any, validate_shape: Any = None, use_locking: Any = None, name: str | None = None) -> Tensor:
    """Set ``ref`` to ``value`` when run (also initializes it); the new value is the output."""
    return _assign_op("Assign", ref, value, name, None)


def assign_add(ref: Variable, value: Any, use_locking: Any = None, name: str | None = None) -> Tensor:
    return _assign_op("AssignAdd", ref, value, name, lambda a, b: a + b)


def assign_sub(ref: Variable, value: Any, use_locking: Any = None, name: str | None = None) -> Tensor:
    return _assign_op("AssignSub", ref, value, name, lambda a, b: a - b)


# -- collections of variables and their initializers --------------------------------------

def global_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


all_variables = global_variables


def trainable_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def local_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def moving_average_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.MOVING_AVERAGE_VARIABLES, scope)


def model_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.MODEL_VARIABLES, scope)


def variables_initializer(var_list, name: str = "init") -> Operation:
    """One op that runs the initializers of ``var_list`` in order."""
    inits = [v.initializer for v in var_list]
    return no_output("NoOp", lambda run, values: None, name=name, control_inputs=inits)


def global_variables_initializer() -> Operation:
    """Initializes the global variables that exist now (TF1)."""
    return variables_initializer(global_variables(), name="init")


initialize_all_variables = global_variables_initializer


def local_variables_initializer() -> Operation:
    return variables_initializer(local_variables(), name="init_1")


def is_variable_initialized(variable: Variable) -> Tensor:
    return leaf("IsVariableInitialized",
                lambda run, values: distnet.constant(np.array(variable._storage(run.session) is not None)),
                np.bool_, TensorShape([]), probes_for(TensorShape([]), np.bool_))


# -- initializers (TF1 objects called as init(shape, dtype) -> tensor) ---------------------

class _Initializer:
    def __init__(self, draw, dtype: Any = np.float32):
        self._draw, self.dtype = draw, dtype

    def __call__(self, shape, dtype=None, partition_info=None):
        return self._draw(list(shape), np.dtype(dtype or self.dtype or np.float32))


def zeros_initializer(dtype: Any = np.float32) -> _Initializer:
    return _Initializer(lambda s, d: array_ops.zeros(s, d), dtype)


def ones_initializer(dtype: Any = np.float32) -> _Initializer:
    return _Initializer(lambda s, d: array_ops.ones(s, d), dtype)


def constant_initializer(value: Any = 0, dtype: Any = np.float32, verify_shape: bool = False) -> _Initializer:
    return _Initializer(lambda s, d: array_ops.constant(value, dtype=d, shape=s), dtype)


def random_normal_initializer(mean: float = 0.0, stddev: float = 1.0, seed: int | None = None,
                              dtype: Any = np.float32) -> _Initializer:
    return _Initializer(lambda s, d: array_ops.random_normal(s, mean, stddev, d, seed), dtype)


def truncated_normal_initializer(mean: float = 0.0, stddev: float = 1.0, seed: int | None = None,
                                 dtype: Any = np.float32) -> _Initializer:
    return _Initializer(lambda s, d: array_ops.truncated_normal(s, mean, stddev, d, seed), dtype)


def random_uniform_initializer(minval: float = 0.0, maxval: float | None = None, seed: int | None = None,
                               dtype: Any = np.float32) -> _Initializer:
    return _Initializer(lambda s, d: array_ops.random_uniform(s, minval, maxval if maxval is not None else 1.0,
                                                              d, seed), dtype)


def variance_scaling_initializer(scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                                 seed: int | None = None, dtype: Any = np.float32) -> _Initializer:
    """TF1's variance scaling: ``stddev = sqrt(scale / n)``, ``n`` the fan chosen by ``mode``."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"Invalid `mode` argument: {mode!r}; Expect: fan_in, fan_out or fan_avg")

    def draw(shape, d):
        fan_in, fan_out = compute_fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        var = scale / max(1.0, n)
        if distribution in ("normal", "truncated_normal"):
            # The truncated draw's stddev is 0.8796 of the untruncated one: compensate (TF1).
            return array_ops.truncated_normal(shape, 0.0, math.sqrt(var) / 0.87962566103423978, d, seed)
        if distribution == "untruncated_normal":
            return array_ops.random_normal(shape, 0.0, math.sqrt(var), d, seed)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return array_ops.random_uniform(shape, -limit, limit, d, seed)
        raise ValueError(f"Invalid `distribution` argument: {distribution!r}")

    return _Initializer(draw, dtype)


def glorot_uniform_initializer(seed: int | None = None, dtype: Any = np.float32) -> _Initializer:
    return variance_scaling_initializer(1.0, "fan_avg", "uniform", seed, dtype)


def glorot_normal_initializer(seed: int | None = None, dtype: Any = np.float32) -> _Initializer:
    return variance_scaling_initializer(1.0, "fan_avg", "truncated_normal", seed, dtype)


def he_normal(seed: int | None = None) -> _Initializer:
    return variance_scaling_initializer(2.0, "fan_in", "truncated_normal", seed)


# -- variable scopes and get_variable -----------------------------------------------------

class _AutoReuse:
    def __repr__(self) -> str:
        return "tf.AUTO_REUSE"


AUTO_REUSE = _AutoReuse()


class VariableScope:
    """What ``tf.variable_scope`` opened: a name prefix, a reuse flag, defaults for get_variable."""

    def __init__(self, name: str, reuse: Any = None, initializer: Any = None, regularizer: Any = None,
                 dtype: Any = np.float32):
        self.name, self.reuse, self.initializer, self.regularizer, self.dtype = name, reuse, initializer, regularizer, dtype
        self.original_name_scope = name + "/" if name else ""

    def reuse_variables(self) -> None:
        self.reuse = True

    def set_initializer(self, initializer: Any) -> None:
        self.initializer = initializer

    def set_regularizer(self, regularizer: Any) -> None:
        self.regularizer = regularizer


def get_variable_scope() -> VariableScope:
    g = get_default_graph()
    if not g._var_scopes:
        g._var_scopes.append(("", VariableScope("")))
    return g._var_scopes[-1][1]


@contextlib.contextmanager
def variable_scope(name_or_scope: Any, default_name: str | None = None, values: Any = None, initializer: Any = None,
                   regularizer: Any = None, caching_device: Any = None, partitioner: Any = None,
                   custom_getter: Any = None, reuse: Any = None, dtype: Any = None, use_resource: Any = None,
                   constraint: Any = None, auxiliary_name_scope: bool = True) -> Iterator[VariableScope]:
    """``get_variable`` names under ``name_or_scope/``; ops under a name scope of the same name."""
    g = get_default_graph()
    parent = get_variable_scope()
    if isinstance(name_or_scope, VariableScope):
        full = name_or_scope.name
    else:
        base = name_or_scope if name_or_scope is not None else default_name
        if base is None:
            raise ValueError("If default_name is None then scope (name_or_scope) is required")
        prefix = f"{parent.name}/" if parent.name else ""
        full = prefix + base
        if name_or_scope is None:
            # A default name is made unique (dense, dense_1, ...), as TF1 does.
            k = 0
            while full in g._var_scope_names:
                k += 1
                full = f"{prefix}{base}_{k}"
    g._var_scope_names.add(full)
    inherited = parent.reuse if reuse is None else reuse
    scope = VariableScope(full, inherited, initializer if initializer is not None else parent.initializer,
                          regularizer if regularizer is not None else parent.regularizer,
                          dtype if dtype is not None else parent.dtype)
    g._var_scopes.append((full, scope))
    try:
        if auxiliary_name_scope:
            with g.name_scope(full.rsplit("/", 1)[-1]):
                yield scope
        else:
            yield scope
    finally:
        g._var_scopes.pop()


def get_variable(name: str, shape: Any = None, dtype: Any = None, initializer: Any = None, regularizer: Any = None,
                 trainable: bool = True, collections: Any = None, caching_device: Any = None, partitioner: Any = None,
                 validate_shape: bool = True, use_resource: Any = None, custom_getter: Any = None,
                 constraint: Any = None, **kwargs) -> Variable:
    """TF1's ``tf.get_variable``: a variable named ``<variable scope>/name``,
    reused when the scope says so; ``regularizer(var)`` goes to
    ``REGULARIZATION_LOSSES``."""
    g = get_default_graph()
    if shape is not None:
        shape = as_shape(shape).as_list()   # an int n is [n], as TF1
    scope = get_variable_scope()
    full = f"{scope.name}/{name}" if scope.name else name
    existing = g._variables_by_name.get(full)
    if existing is not None:
        if scope.reuse is True or scope.reuse is AUTO_REUSE:
            if shape is not None and not existing.shape.is_compatible_with(list(shape)):
                raise ValueError(f"Trying to share variable {full}, but specified shape {list(shape)} "
                                 f"and found shape {existing.shape}.")
            return existing
        raise ValueError(f"Variable {full} already exists, disallowed. Did you mean to set reuse=True or "
                         "reuse=tf.AUTO_REUSE in VarScope?")
    if scope.reuse is True:
        raise ValueError(f"Variable {full} does not exist, or was not created with tf.get_variable(). "
                         "Did you mean to set reuse=tf.AUTO_REUSE in VarScope?")
    dt = as_dtype(dtype if dtype is not None else (scope.dtype or np.float32))
    init = initializer if initializer is not None else scope.initializer
    with g.name_scope(None), g.control_dependencies(None):
        if init is None:
            init = glorot_uniform_initializer() if dt.kind == "f" else zeros_initializer()
        if isinstance(init, (Tensor, np.ndarray, list, tuple, int, float)) and not callable(init):
            value = init
        else:
            if shape is None:
                raise ValueError(f"Shape of a new variable ({full}) must be fully defined, but instead was None.")
            value = init(list(shape), dt)
        var = Variable(value, trainable=trainable, collections=collections, name=full, dtype=dt,
                       validate_shape=validate_shape)
    reg = regularizer if regularizer is not None else scope.regularizer
    if reg is not None:
        with g.name_scope(full + "/Regularizer/"):
            term = reg(var)
        if term is not None:
            g.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, term)
    return var
