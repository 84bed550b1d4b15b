"""TF1's ``tf.gradients`` and ``tf.train`` in graph mode: optimizers,
learning-rate decays of ``global_step``, the global step, and
``ExponentialMovingAverage``.

The update rules are distnet's (:mod:`distnet.optimizers`, TF1's formulas
and defaults), the decays :mod:`distnet.model.schedules` and the averages
:class:`distnet.ExponentialMovingAverage`: a session holds one native
optimizer / average per graph object, keyed by the variables' TF1 names.
Gradients are :func:`distnet.gradients` of the values computed in the same
``Session.run`` -- so a step never reuses the values of an earlier one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import distnet
from distnet import optimizers as _opt
from distnet.model import schedules as _sched
from distnet.compat.v1.errors import FailedPreconditionError
from distnet.compat.v1.graph import (
    GraphKeys, Operation, Tensor, TensorShape, build, convert_to_tensor, get_default_graph, leaf, no_output,
    upstream_ops,
)
from distnet.compat.v1.variables import Variable, global_variables, trainable_variables
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor, check_not_stale


# -- gradients ----------------------------------------------------------------------------

def _reaches(ys: Sequence[Tensor], x: Tensor) -> bool:
    """Whether ``x`` is an input (transitively) of one of ``ys`` in the graph."""
    return any(op is x.op for op in upstream_ops(ys))


def eager_sum(values: Sequence[EagerTensor], weights: Sequence[Any] | None = None) -> EagerTensor:
    """``sum(w * y)`` of the run's values, each reduced to a scalar first (TF1 differentiates sum(ys))."""
    total = None
    for i, y in enumerate(values):
        if weights is not None and weights[i] is not None:
            y = y * weights[i]
        if y.data.size != 1:
            y = distnet.reduce_sum(y)
        total = y if total is None else total + y
    return total


def _grads_node(op_type: str, ys: Sequence[Tensor], xs: Sequence[Tensor], grad_ys: Sequence[Any] | None, compute_grads):
    """A hidden op computing every gradient at once (its value is a list), and one tensor per x."""
    inputs = list(ys) + list(xs)
    extra = [g for g in (grad_ys or []) if isinstance(g, Tensor)]
    n_y, n_x = len(ys), len(xs)

    def compute(run, values):
        y_vals, x_vals = values[:n_y], values[n_y:n_y + n_x]
        gy = values[n_y + n_x:]
        weights = None
        if grad_ys is not None:
            it = iter(gy)
            weights = [next(it) if isinstance(g, Tensor) else g for g in grad_ys]
        # A variable updated earlier in this call was read more than once (one copy
        # per version, see variables.snapshot); the ys may have used any of the reads,
        # so the gradient is the sum over them, as TF1 sums over a variable's reads.
        reads = [_reads(run, x, v) for x, v in zip(xs, x_vals)]
        if all(len(r) == 1 for r in reads):
            return compute_grads(run, y_vals, x_vals, weights)
        flat = compute_grads(run, y_vals, [v for r in reads for v in r], weights)
        out, pos = [], 0
        for r in reads:
            g = flat[pos]
            for extra in flat[pos + 1:pos + len(r)]:
                g = g + extra
            out.append(g)
            pos += len(r)
        return out

    node = Operation(op_type, inputs + extra, compute, name=op_type)
    node._gradient = True   # see Session.run
    out = []
    for i, x in enumerate(xs):
        if not _reaches(ys, x):
            out.append(None)   # TF1: None for a tensor the ys do not depend on
            continue
        out.append(leaf("Gradient", lambda run, values, i=i: EagerTensor._from_op(values[0][i], None, ()),
                        x.dtype if x.dtype is not None and x.dtype.kind == "f" else np.float32,
                        x.shape, x._probes, name=f"{op_type}/grad_{i}", inputs=[node_tensor(node)]))
    return out


def _reads(run, x: Tensor, value) -> list:
    """The values ``x`` had in ``run``: every read of a variable, else ``[value]``."""
    taken = run.snapshots.get(x.op) if run is not None and isinstance(x, Variable) else None
    if not taken or len(taken) == 1:
        return [value]
    return [v for _, _, v in taken]


def node_tensor(op: Operation) -> Tensor:
    """A tensor standing for ``op``'s (internal) value, so other ops can take it as input."""
    if not op.outputs:
        Tensor(op, None, TensorShape(None), None)
    return op.outputs[0]


def _local_grads(run, y_vals, x_vals, weights) -> list:
    loss = eager_sum(y_vals, weights)
    check_not_stale(loss)
    return distnet.gradients(loss, list(x_vals))


def gradients(ys, xs, grad_ys=None, name: str = "gradients", colocate_gradients_with_ops: bool = False,
              gate_gradients: bool = False, aggregation_method: Any = None, stop_gradients: Any = None,
              unconnected_gradients: Any = None) -> list:
    """TF1's ``tf.gradients``: d(sum(ys))/dx for each x (None where ys do not depend on x)."""
    ys = [ys] if isinstance(ys, Tensor) else list(ys)
    xs = [xs] if isinstance(xs, Tensor) else list(xs)
    ys = [convert_to_tensor(y) for y in ys]
    if grad_ys is not None and not isinstance(grad_ys, (list, tuple)):
        grad_ys = [grad_ys]
    return _grads_node("gradients", ys, xs, grad_ys, _local_grads)


# -- optimizers ---------------------------------------------------------------------------

class Optimizer:
    """TF1's ``tf.train.Optimizer``: ``minimize = compute_gradients + apply_gradients``.

    ``learning_rate`` is a number or a tensor (e.g. ``exponential_decay(...,
    global_step, ...)``), read when the step runs, before ``global_step`` is
    incremented.
    """

    _native_cls: type = _opt.GradientDescent
    #: The ``DistributedOptimizer`` wrapping this one, which applies its updates (None: applied here).
    _applier = None

    def __init__(self, learning_rate: Any, use_locking: bool = False, name: str | None = None, **hyper):
        if learning_rate is None:
            raise ValueError("learning_rate must be given")
        self._lr = learning_rate
        self._hyper = hyper
        self._name = name or type(self).__name__.replace("Optimizer", "")
        self._vars: list = []

    def get_name(self) -> str:
        return self._name

    # -- the native optimizer of a session ----------------------------------------------
    def _native(self, session):
        def make():
            lr = self._lr if isinstance(self._lr, (int, float)) and not isinstance(self._lr, bool) else 1.0
            native = self._native_cls(lr, **self._hyper, name=self._name)
            return native

        return session.resource(("optimizer", self), make)

    def _step(self, run, lr_value, pairs, global_step: Variable | None) -> None:
        session = run.session
        native = self._native(session)
        if lr_value is not None:
            native.learning_rate = float(np.asarray(lr_value.data if isinstance(lr_value, EagerTensor) else lr_value))
        storages = []
        for g, v in pairs:
            st = v._storage(session)
            if st is None:
                raise FailedPreconditionError(f"Attempting to use uninitialized value {v.op.name}")
            storages.append((g, st))
        pending = session.resource(("optimizer-state", self))
        if pending is not None:
            session.set_resource(("optimizer-state", self), None)
        arrays = [(None if g is None else g.data, st) for g, st in storages]
        if self._applier is not None:   # a DistributedOptimizer: guard, and ZeRO-1's sharded update
            if not self._applier._apply(run, native, arrays, pending):
                return   # a skipped step: global_step stays (as the native Trainer's)
        else:
            if pending is not None:
                native.build([st for _, st in storages])
                native.load_state_dict(pending)
            native.apply_gradients(arrays)
        if global_step is not None:
            gs = global_step._storage(session)
            if gs is None:
                raise FailedPreconditionError(f"Attempting to use uninitialized value {global_step.op.name}")
            gs.assign(gs.data + 1)

    # -- TF1 API ------------------------------------------------------------------------
    def compute_gradients(self, loss, var_list=None, gate_gradients: int = 1, aggregation_method: Any = None,
                          colocate_gradients_with_ops: bool = False, grad_loss: Any = None) -> list:
        """``[(gradient tensor or None, variable)]`` for the trainable variables (or ``var_list``)."""
        if callable(loss) and not isinstance(loss, Tensor):
            loss = loss()
        loss = convert_to_tensor(loss)
        if var_list is None:
            var_list = trainable_variables() + get_default_graph().get_collection("trainable_resource_variables")
        var_list = list(var_list)
        if not var_list:
            raise ValueError("No variables to optimize.")
        for v in var_list:
            if not isinstance(v, Variable):
                raise TypeError(f"Argument is not a tf.Variable: {v!r}")
        grads = self._gradients(loss, var_list, grad_loss)
        return list(zip(grads, var_list))

    def _gradients(self, loss: Tensor, var_list: list, grad_loss: Any) -> list:
        return _grads_node("gradients", [loss], var_list, None if grad_loss is None else [grad_loss], _local_grads)

    def apply_gradients(self, grads_and_vars, global_step: Variable | None = None, name: str | None = None) -> Operation:
        """An op applying one update (TF1's formula) and incrementing ``global_step``."""
        pairs = list(grads_and_vars)
        if not pairs:
            raise ValueError("No variables provided.")
        converted = []
        for g, v in pairs:
            if not isinstance(v, Variable):
                raise TypeError(f"apply_gradients: Expect: (gradient, tf.Variable) pairs Actual: {v!r}")
            converted.append((None if g is None else convert_to_tensor(g), v))
        if all(g is None for g, _ in converted):
            raise ValueError(f"No gradients provided for any variable, check your graph for ops that do not support "
                             f"gradients, between variables {[v.op.name for _, v in converted]} and loss")
        if global_step is not None and not isinstance(global_step, Variable):
            raise TypeError(f"global_step: Expect: a tf.Variable (tf.train.get_or_create_global_step()) "
                            f"Actual: {type(global_step).__name__}")
        lr_t = self._lr if isinstance(self._lr, Tensor) else None
        grads = [g for g, _ in converted if g is not None]
        which = [i for i, (g, _) in enumerate(converted) if g is not None]
        inputs = ([lr_t] if lr_t is not None else []) + grads

        def compute(run, values):
            lr_value = values[0] if lr_t is not None else None
            gv = values[1:] if lr_t is not None else values
            full = [(None, v) for _, v in converted]
            for k, i in enumerate(which):
                full[i] = (gv[k], converted[i][1])
            self._step(run, lr_value, full, global_step)

        self._vars = [v for _, v in converted]
        graph = get_default_graph()
        if self not in graph._optimizers:
            graph._optimizers.append(self)
        return no_output("ApplyGradients", compute, inputs, name=name or self._name)

    def minimize(self, loss, global_step: Variable | None = None, var_list=None, gate_gradients: int = 1,
                 aggregation_method: Any = None, colocate_gradients_with_ops: bool = False, name: str | None = None,
                 grad_loss: Any = None) -> Operation:
        """``apply_gradients(compute_gradients(loss, var_list), global_step)``."""
        gv = self.compute_gradients(loss, var_list=var_list, grad_loss=grad_loss)
        if all(g is None for g, _ in gv):
            raise ValueError(f"No gradients provided for any variable, check your graph for ops that do not support "
                             f"gradients, between variables {[v.op.name for _, v in gv]} and loss {loss!r}")
        return self.apply_gradients(gv, global_step=global_step, name=name)

    def get_slot_names(self) -> list:
        return list(self._native_cls.slot_names) if isinstance(self._native_cls.slot_names, tuple) else []

    def get_slot(self, var: Variable, name: str) -> Tensor:
        """The value of slot ``name`` of ``var`` (read-only here)."""
        opt = self

        def compute(run, values):
            native = opt._native(run.session)
            return distnet.constant(native.get_slot(var.op.name, name).copy())

        return leaf("Slot", compute, var.dtype, var.shape, var._probes, name=f"{var.op.name}/{name}")

    def variables(self) -> list:
        return []


class GradientDescentOptimizer(Optimizer):
    """``var -= lr * grad``."""

    _native_cls = _opt.GradientDescent

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(learning_rate, use_locking, name)


class MomentumOptimizer(Optimizer):
    """TF1's momentum: ``accum = mu * accum + g; var -= lr * accum`` (Nesterov optional)."""

    _native_cls = _opt.Momentum

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum", use_nesterov=False):
        super().__init__(learning_rate, use_locking, name, momentum=momentum, use_nesterov=use_nesterov)


class AdamOptimizer(Optimizer):
    """TF1's Adam (epsilon hat) with TF1's defaults."""

    _native_cls = _opt.Adam

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, use_locking=False, name="Adam"):
        super().__init__(learning_rate, use_locking, name, beta1=beta1, beta2=beta2, epsilon=epsilon)


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp (mean square starts at ones, epsilon inside the root)."""

    _native_cls = _opt.RMSProp

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False, centered=False,
                 name="RMSProp"):
        super().__init__(learning_rate, use_locking, name, decay=decay, momentum=momentum, epsilon=epsilon,
                         centered=centered)

    def get_slot_names(self) -> list:
        return ["rms", "momentum"] + (["mg"] if self._hyper.get("centered") else [])


class AdagradOptimizer(Optimizer):
    """TF1's Adagrad (accumulator starts at ``initial_accumulator_value``)."""

    _native_cls = _opt.Adagrad

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False, name="Adagrad"):
        super().__init__(learning_rate, use_locking, name, initial_accumulator_value=initial_accumulator_value)


class AdadeltaOptimizer(Optimizer):
    """TF1's Adadelta with TF1's defaults (``learning_rate=0.001, rho=0.95, epsilon=1e-8``)."""

    _native_cls = _opt.Adadelta

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-08, use_locking=False, name="Adadelta"):
        super().__init__(learning_rate, use_locking, name, rho=rho, epsilon=epsilon)


# -- learning-rate decays of global_step ------------------------------------------------

def _decay(op_type: str, schedule, global_step, name: str | None, dtype=np.float32) -> Tensor:
    if global_step is None:
        raise ValueError(f"global_step is required for {op_type}.")
    step = convert_to_tensor(global_step)

    def fn(gs):
        return distnet.constant(np.asarray(schedule(int(np.asarray(gs.data))), dtype=dtype))

    return build(op_type, fn, step, _name=name or op_type)


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False, name=None) -> Tensor:
    """``learning_rate * decay_rate ** (global_step / decay_steps)``, the exponent floored with ``staircase``.

    ``learning_rate`` may be a tensor, as in TF1 (contrib's ``optimize_loss`` passes its learning-rate
    variable): the decay factor of the step times its value."""
    if isinstance(learning_rate, Tensor):
        factor = _decay("ExponentialDecay", _sched.exponential_decay(1.0, decay_steps, decay_rate, staircase),
                        global_step, None)
        return build("Mul", lambda lr, f: lr * f, learning_rate, factor, _name=name or "ExponentialDecay")
    return _decay("ExponentialDecay", _sched.exponential_decay(learning_rate, decay_steps, decay_rate, staircase),
                  global_step, name)


def piecewise_constant(x, boundaries, values, name=None) -> Tensor:
    """``values[i]`` while ``boundaries[i-1] < x <= boundaries[i]`` (TF1)."""
    dt = np.asarray(values[0]).dtype if not isinstance(values[0], float) else np.float32
    return _decay("PiecewiseConstant", _sched.piecewise_constant(boundaries, values), x, name, dtype=dt)


def polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                     name=None) -> Tensor:
    return _decay("PolynomialDecay", _sched.polynomial_decay(learning_rate, decay_steps, end_learning_rate, power, cycle),
                  global_step, name)


def cosine_decay(learning_rate, global_step, decay_steps, alpha=0.0, name=None) -> Tensor:
    return _decay("CosineDecay", _sched.cosine_decay(learning_rate, decay_steps, alpha), global_step, name)


# -- the global step --------------------------------------------------------------------

def get_global_step(graph=None) -> Variable | None:
    g = graph if graph is not None else get_default_graph()
    found = g.get_collection(GraphKeys.GLOBAL_STEP)
    if found:
        return found[0]
    return g._variables_by_name.get("global_step")


def create_global_step(graph=None) -> Variable:
    g = graph if graph is not None else get_default_graph()
    if get_global_step(g) is not None:
        raise ValueError("global_step already exists.")
    with g.as_default(), g.name_scope(None):
        return Variable(np.int64(0), trainable=False, name="global_step",
                        collections=[GraphKeys.GLOBAL_VARIABLES, GraphKeys.GLOBAL_STEP])


def get_or_create_global_step(graph=None) -> Variable:
    """The graph's ``global_step`` (an int64 variable starting at 0), created on first use."""
    return get_global_step(graph) or create_global_step(graph)


def global_step(sess, global_step_tensor) -> int:
    return int(sess.run(global_step_tensor))


# -- moving averages --------------------------------------------------------------------

class _ShadowVariable(Variable):
    """A moving average's shadow: its value in a session is the native average's shadow."""

    def _store(self, run, value, broadcast=False):
        session = run.session
        source = self._source
        st = source._storage(session)
        if st is None:
            run.evaluate(source.initializer)
            st = source._storage(session)
        native = self._ema._native(session)
        if st.name not in native.shadows:
            native.build([st])
        shadow = native.average(st)
        shadow.assign(value.data if isinstance(value, EagerTensor) else np.asarray(value))
        session.set_resource(("var", self), shadow)
        return shadow


class ExponentialMovingAverage:
    """TF1's ``tf.train.ExponentialMovingAverage(decay, num_updates=None)``.

    ``apply(var_list)`` creates a shadow variable per variable
    (``<name>/ExponentialMovingAverage``, starting at the variable's initial
    value) and returns the op that updates them:
    ``shadow = d * shadow + (1 - d) * var`` with
    ``d = min(decay, (1 + n) / (10 + n))`` when ``num_updates`` (e.g. the
    global step) is given.
    """

    def __init__(self, decay, num_updates=None, zero_debias: bool = False, name: str = "ExponentialMovingAverage"):
        if zero_debias:
            raise InvalidArgumentError("ExponentialMovingAverage(zero_debias=True) is not supported by "
                                       "distnet.compat.v1; the default zero_debias=False is TF1's for variables")
        if isinstance(decay, Tensor):
            raise InvalidArgumentError("ExponentialMovingAverage: Expect: decay as a number Actual: a tensor")
        self._decay = float(decay)
        self._num_updates = num_updates
        self._name = name
        self._averages: dict = {}

    @property
    def name(self) -> str:
        return self._name

    def _native(self, session):
        return session.resource(("ema", self), lambda: distnet.ExponentialMovingAverage(self._decay, name=self._name))

    def apply(self, var_list=None) -> Operation:
        if var_list is None:
            var_list = trainable_variables()
        var_list = list(var_list)
        g = get_default_graph()
        for v in var_list:
            if not isinstance(v, Variable):
                raise TypeError(f"ExponentialMovingAverage.apply: Expect: tf.Variables Actual: {v!r}")
            if v.dtype.kind != "f":
                raise TypeError(f"The variables must be half, float, or double: {v.op.name}")
            if v in self._averages:
                raise ValueError(f"Moving average already computed for: {v.op.name}")
            with g.name_scope(None), g.control_dependencies(None):
                shadow = _ShadowVariable.__new__(_ShadowVariable)
                shadow._source, shadow._ema = v, self
                Variable.__init__(shadow, v.initialized_value(), trainable=False, name=self.average_name(v),
                                  collections=[GraphKeys.GLOBAL_VARIABLES])
            self._averages[v] = shadow
            if v not in g.get_collection(GraphKeys.MOVING_AVERAGE_VARIABLES):
                g.add_to_collection(GraphKeys.MOVING_AVERAGE_VARIABLES, v)
        n_t = convert_to_tensor(self._num_updates) if self._num_updates is not None else None
        tracked = list(var_list)

        def compute(run, values):
            session = run.session
            native = self._native(session)
            stores = []
            for v in tracked:
                st = v._storage(session)
                if st is None or self._averages[v]._storage(session) is None:
                    missing = v.op.name if st is None else self.average_name(v)
                    raise FailedPreconditionError(f"Attempting to use uninitialized value {missing}: Expect: "
                                                  "sess.run(tf.global_variables_initializer()) after ema.apply()")
                stores.append(st)
            n = None if n_t is None else int(np.asarray(values[0].data))
            native.apply(stores, num_updates=n)

        return no_output("ExponentialMovingAverage", compute, [n_t] if n_t is not None else [], name=self._name)

    def average(self, var: Variable) -> Variable | None:
        """The shadow of ``var`` (None if it is not averaged, as TF1)."""
        return self._averages.get(var)

    def average_name(self, var: Variable) -> str:
        return f"{var.op.name}/{self._name}"

    def variables_to_restore(self, moving_avg_variables=None) -> dict:
        """``{checkpoint name: variable}`` that restores the shadows into the variables (for evaluation)."""
        if moving_avg_variables is None:
            moving_avg_variables = trainable_variables() + get_default_graph().get_collection(
                GraphKeys.MOVING_AVERAGE_VARIABLES)
        name_map = {}
        for v in moving_avg_variables:
            name_map[self.average_name(v)] = v
        tracked = set(moving_avg_variables)
        for v in global_variables():
            if v not in tracked and v.op.name not in name_map:
                name_map[v.op.name] = v
        return name_map
