"""tf.train.MonitoredTrainingSession and the hooks (distnet/compat/v1/monitored.py,
hooks.py): the steps, checkpoints, summaries and log lines TF 2.21's
``tf.compat.v1`` gives for the same program (recorded), the hook protocol,
and N ranks under ``mpiexec``."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import distnet.compat.v1 as tf
from mpi_util import mpi_env, run_mpi

# Recorded from TF 2.21 for _model() with MonitoredTrainingSession(save_checkpoint_steps=2,
# save_summaries_steps=2, log_step_count_steps=2), StopAtStepHook(last_step=5), then a second
# session restoring it with StopAtStepHook(num_steps=2): (global step, loss) of each run.
TF_RUNS = [(1, 2.25), (2, 1.2921), (3, 0.9020767), (4, 0.74196225), (5, 0.674936)]
TF_RUNS_AFTER_RESTORE = [(6, 0.64560765), (7, 0.6315539)]
TF_CHECKPOINTS = ["model.ckpt-0", "model.ckpt-2", "model.ckpt-4", "model.ckpt-5"]
TF_SUMMARY_STEPS = [1, 3, 5]
TF_STEP_COUNTER_STEPS = [3, 5]
TF_LOGGED_STEPS = [1, 3, 5]     # LoggingTensorHook(every_n_iter=2): "loss = 2.25, step = 1", ...


def _model():
    tf.reset_default_graph()
    x = tf.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
    w = tf.Variable(np.array([[0.5], [-0.5]], np.float32))
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - 1.0))
    tf.summary.scalar("loss", loss)
    gs = tf.train.get_or_create_global_step()
    train = tf.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=gs)
    return w, loss, gs, train


def _events(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def test_training_session_steps_checkpoints_summaries_and_logs_are_tf1s(tmp_path, caplog):
    ckpt = tmp_path / "mts"
    w, loss, gs, train = _model()
    hooks = [tf.train.StopAtStepHook(last_step=5),
             tf.train.LoggingTensorHook({"loss": loss, "step": gs}, every_n_iter=2)]
    runs = []
    with caplog.at_level(logging.INFO, logger="distnet.compat.v1"):
        with tf.train.MonitoredTrainingSession(checkpoint_dir=str(ckpt), hooks=hooks, save_checkpoint_steps=2,
                                               save_summaries_steps=2, log_step_count_steps=2) as sess:
            assert tf.get_default_graph().finalized
            while not sess.should_stop():
                _, step, value = sess.run([train, gs, loss])
                runs.append((int(step), float(value)))
    assert not tf.get_default_graph().finalized
    assert [s for s, _ in runs] == [s for s, _ in TF_RUNS]
    np.testing.assert_allclose([v for _, v in runs], [v for _, v in TF_RUNS], rtol=1e-6)
    assert sorted(f for f in os.listdir(ckpt) if f.startswith("model.ckpt")) == TF_CHECKPOINTS
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("model.ckpt-5")
    acc = _events(ckpt)
    assert [e.step for e in acc.Scalars("loss")] == TF_SUMMARY_STEPS
    np.testing.assert_allclose([e.value for e in acc.Scalars("loss")], [2.25, 0.9020767, 0.674936], rtol=1e-6)
    assert [e.step for e in acc.Scalars("global_step/sec")] == TF_STEP_COUNTER_STEPS
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loss = ")]
    assert [m.split("step = ")[1].split(" ")[0] for m in logged] == [str(s) for s in TF_LOGGED_STEPS]
    assert logged[0] == "loss = 2.25, step = 1"

    # A second session restores the newest checkpoint (no initializer runs) and goes on.
    w, loss, gs, train = _model()
    runs = []
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(ckpt), hooks=[tf.train.StopAtStepHook(num_steps=2)],
                                           save_checkpoint_steps=2) as sess:
        assert sess.run(gs) == 5
        while not sess.should_stop():
            _, step, value = sess.run([train, gs, loss])
            runs.append((int(step), float(value)))
    assert [s for s, _ in runs] == [6, 7]
    np.testing.assert_allclose([v for _, v in runs], [v for _, v in TF_RUNS_AFTER_RESTORE], rtol=1e-6)
    assert "model.ckpt-7" in os.listdir(ckpt)


def test_out_of_range_ends_the_with_block_and_hooks_end_runs():
    w, loss, gs, train = _model()
    final = tf.train.FinalOpsHook(w)
    count = 0
    with tf.train.MonitoredTrainingSession(hooks=[final]) as sess:
        while not sess.should_stop():
            sess.run(train)
            count += 1
            if count == 3:
                raise tf.errors.OutOfRangeError(None, None, "End of sequence")
        pytest.fail("the OutOfRangeError must leave the with block")
    assert count == 3
    np.testing.assert_allclose(final.final_ops_values, [[0.48], [-0.8]], atol=0.5)   # the trained weights, read
    assert final.final_ops_values.shape == (2, 1)


def test_other_errors_propagate_and_skip_hooks_end():
    w, loss, gs, train = _model()
    final = tf.train.FinalOpsHook(w)
    with pytest.raises(ZeroDivisionError):
        with tf.train.MonitoredTrainingSession(hooks=[final]) as sess:
            sess.run(train)
            raise ZeroDivisionError("a failing step")
    assert final.final_ops_values is None


def test_nan_tensor_hook_raises_or_stops():
    tf.reset_default_graph()
    v = tf.Variable(1.0)
    loss = tf.log(v - 1.0) * 0.0      # log(0) * 0 = nan
    tf.train.get_or_create_global_step()
    with pytest.raises(tf.train.NanLossDuringTrainingError, match="NaN loss during training"):
        with tf.train.MonitoredTrainingSession(hooks=[tf.train.NanTensorHook(loss)]) as sess:
            sess.run(v)
    with tf.train.MonitoredTrainingSession(hooks=[tf.train.NanTensorHook(loss, fail_on_nan_loss=False)]) as sess:
        sess.run(v)
        assert sess.should_stop()


class _Recorder(tf.train.SessionRunHook):
    def __init__(self, fetch, feed=None):
        self.fetch, self.feed, self.calls, self.seen = fetch, feed, [], []

    def begin(self):
        self.calls.append("begin")

    def after_create_session(self, session, coord):
        self.calls.append("after_create_session")

    def before_run(self, run_context):
        self.calls.append("before_run")
        assert run_context.original_args.fetches is not None
        return tf.train.SessionRunArgs(self.fetch, feed_dict=self.feed)

    def after_run(self, run_context, run_values):
        self.calls.append("after_run")
        self.seen.append(run_values.results)
        if len(self.seen) == 2:
            run_context.request_stop()

    def end(self, session):
        self.calls.append("end")


def test_hook_protocol_fetches_feeds_and_request_stop():
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [])
    y = tf.placeholder(tf.float32, [])
    rec = _Recorder({"double": x * 2.0}, feed={x: 3.0})
    y1 = y + 1.0
    with tf.train.SingularMonitoredSession(hooks=[rec]) as sess:
        assert isinstance(sess.raw_session(), tf.Session)
        with pytest.raises(RuntimeError, match="Graph is finalized"):
            y + 2.0
        assert sess.run(y1, feed_dict={y: 1.0}) == 2.0
        assert not sess.should_stop()
        sess.run(y, feed_dict={y: 0.0})
        assert sess.should_stop()
    assert rec.calls == ["begin", "after_create_session", "before_run", "after_run", "before_run", "after_run",
                         "end"]
    assert rec.seen == [{"double": 6.0}, {"double": 6.0}]
    clash = _Recorder(x, feed={x: 1.0})
    with tf.train.MonitoredSession(hooks=[clash]) as sess:
        with pytest.raises(RuntimeError, match="Same tensor is fed by a SessionRunHook and user"):
            sess.run(x, feed_dict={x: 2.0})


def test_config_proto_is_accepted_and_checks_its_fields():
    config = tf.ConfigProto(allow_soft_placement=True, gpu_options=tf.GPUOptions(per_process_gpu_memory_fraction=0.5))
    config.gpu_options.allow_growth = True
    config.gpu_options.visible_device_list = "0"
    assert config.gpu_options == tf.GPUOptions(per_process_gpu_memory_fraction=0.5, allow_growth=True,
                                               visible_device_list="0")
    with pytest.raises(AttributeError, match="GPUOptions has no field 'allow_growht'"):
        config.gpu_options.allow_growht = True
    w, loss, gs, train = _model()
    with tf.train.MonitoredTrainingSession(config=config, hooks=[tf.train.StopAtStepHook(last_step=1)]) as sess:
        sess.run(train)
        assert sess.should_stop()
    with tf.Session(config=config) as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(gs) == 0


def test_hooks_refuse_bad_arguments():
    with pytest.raises(ValueError, match="One of num_steps or last_step"):
        tf.train.StopAtStepHook()
    with pytest.raises(ValueError, match="exactly one of every_n_iter and every_n_secs"):
        tf.train.LoggingTensorHook({"a": "x:0"})
    with pytest.raises(ValueError, match="Can not provide both"):
        tf.train.CheckpointSaverHook("d", save_secs=1, save_steps=1)
    tf.reset_default_graph()
    tf.Variable(1.0)
    with pytest.raises(RuntimeError, match="Global step should be created to use StopAtStepHook"):
        tf.train.MonitoredTrainingSession(hooks=[tf.train.StopAtStepHook(last_step=1)])


_MPI_PROGRAM = r"""
import os, sys
import numpy as np
import distnet.compat.v1 as tf
rs = np.random.RandomState(0)
X = rs.randn(8, 3).astype(np.float32)
Y = rs.randn(8, 1).astype(np.float32)
x = tf.placeholder(tf.float32, [None, 3]); y = tf.placeholder(tf.float32, [None, 1])
w = tf.get_variable("w", [3, 1], initializer=tf.random_normal_initializer(seed=1))   # differs by rank without a broadcast
loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y))
tf.summary.scalar("loss", loss)
gs = tf.train.get_or_create_global_step()
opt = tf.train.GradientDescentOptimizer(0.1)
distributed = os.environ.get("DISTRIBUTED") == "1"
if distributed:
    opt = tf.DistributedOptimizer(opt)
train = opt.minimize(loss, global_step=gs)
rank = tf.distributed.rank() if distributed else 0
hooks = [tf.train.StopAtStepHook(last_step=int(sys.argv[2]))]
if distributed:
    hooks.append(tf.distributed.BroadcastGlobalVariablesHook(0))
ckpt = sys.argv[1] if rank == 0 else None            # Horovod's idiom: only rank 0 checkpoints
chief_summary = os.environ.get("CHIEF_SUMMARY") == "1"
chief_only = [tf.train.SummarySaverHook(save_steps=2, output_dir=sys.argv[1] + "_chief",
                                        summary_op=tf.summary.merge_all())] if chief_summary else []
by_secs = os.environ.get("BY_SECS") == "1"           # rank 0 decides when; the others follow
timing = (dict(save_checkpoint_secs=0.001, save_summaries_secs=0.001) if by_secs else
          dict(save_checkpoint_steps=2, save_summaries_steps=None if chief_summary else 2))
with tf.train.MonitoredTrainingSession(checkpoint_dir=ckpt, is_chief=rank == 0, hooks=hooks,
                                       chief_only_hooks=chief_only, **timing) as sess:
    start = None
    while not sess.should_stop():
        xs, ys = tf.distributed.shard(X, Y) if distributed else (X, Y)
        # Fetch with the step: the summary hook's first run needs the feeds (as in TF1).
        _, step, final, local_loss = sess.run([train, gs, w, loss], {x: xs, y: ys})
        if start is None and rank == 0:
            print("first_local_loss", repr(float(local_loss)))
        start = step - 1 if start is None else start
if rank == 0:
    print("start", start)
    print("w", *final.ravel().tolist())
"""


def _numbers(stdout, key):
    return [[float(v) for v in line.split()[1:]] for line in stdout.splitlines() if line.startswith(key + " ")]


@pytest.mark.parametrize("n", [2, 3])
def test_training_session_on_n_ranks_equals_one_process_and_resumes(tmp_path, n):
    prog = tmp_path / "mts_mpi.py"
    prog.write_text(_MPI_PROGRAM)
    one = subprocess.run([sys.executable, str(prog), str(tmp_path / "one"), "4"], capture_output=True, text=True,
                         timeout=300, env=mpi_env())
    assert one.returncode == 0, one.stderr
    run = run_mpi(str(prog), n, str(tmp_path / "many"), "4", timeout=300, env={"DISTRIBUTED": "1"})
    assert run.returncode == 0, run.describe()
    np.testing.assert_allclose(_numbers(run.stdout, "w"), _numbers(one.stdout, "w"), rtol=1e-5)
    assert sorted(f for f in os.listdir(tmp_path / "many") if f.startswith("model")) == \
        ["model.ckpt-0", "model.ckpt-2", "model.ckpt-4"]
    # The summaries of the loss are the global batch's (equal to one process's).
    np.testing.assert_allclose([e.value for e in _events(tmp_path / "many").Scalars("loss")],
                               [e.value for e in _events(tmp_path / "one").Scalars("loss")], rtol=1e-5)
    # Resume on N ranks from rank 0's checkpoint: every rank restores step 4 and goes on to 6.
    one6 = subprocess.run([sys.executable, str(prog), str(tmp_path / "one"), "6"], capture_output=True, text=True,
                          timeout=300, env=mpi_env())
    run6 = run_mpi(str(prog), n, str(tmp_path / "many"), "6", timeout=300, env={"DISTRIBUTED": "1"})
    assert run6.returncode == 0, run6.describe()
    assert _numbers(run6.stdout, "start") == [[4.0]]
    np.testing.assert_allclose(_numbers(run6.stdout, "w"), _numbers(one6.stdout, "w"), rtol=1e-5)


def test_run_step_fn_feed_fn_hook_and_a_listener_that_stops(tmp_path):
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [])
    v = tf.Variable(0.0)
    gs = tf.train.get_or_create_global_step()
    step = tf.group(tf.assign_add(v, x), tf.assign_add(gs, 1))
    fed = iter([1.0, 2.0, 3.0, 4.0, 5.0])

    class StopAfterTwoSaves(tf.train.CheckpointSaverListener):
        def __init__(self):
            self.saved = []

        def after_save(self, session, global_step_value):
            self.saved.append(global_step_value)
            return len(self.saved) == 2

    listener = StopAfterTwoSaves()
    hooks = [tf.train.FeedFnHook(lambda: {x: next(fed)}),
             tf.train.CheckpointSaverHook(str(tmp_path), save_steps=2, listeners=[listener])]
    with tf.train.SingularMonitoredSession(hooks=hooks) as sess:
        while not sess.should_stop():
            sess.run_step_fn(lambda ctx: ctx.run_with_hooks(step))
        assert sess.raw_session().run(v) == 1.0 + 2.0       # saved at step 0 and 2: the second save stops
    assert listener.saved == [0, 2]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-2")


def test_a_chief_only_summary_hook_on_two_ranks_writes_rank_zeros_values(tmp_path):
    prog = tmp_path / "mts_mpi.py"
    prog.write_text(_MPI_PROGRAM)
    run = run_mpi(str(prog), 2, str(tmp_path / "many"), "4", timeout=300,
                  env={"DISTRIBUTED": "1", "CHIEF_SUMMARY": "1"})
    assert run.returncode == 0, run.describe()          # no all-reduce waited for rank 1
    written = _events(str(tmp_path / "many") + "_chief").Scalars("loss")
    assert [e.step for e in written] == [1, 3]
    # The first summary is rank 0's own shard loss (the value it fetched in that step), not the global one.
    assert written[0].value == pytest.approx(float(run.values("first_local_loss")[0]), rel=1e-6)


def test_saving_by_seconds_on_three_ranks_follows_rank_zero(tmp_path):
    prog = tmp_path / "mts_mpi.py"
    prog.write_text(_MPI_PROGRAM)
    one = subprocess.run([sys.executable, str(prog), str(tmp_path / "one"), "4"], capture_output=True, text=True,
                         timeout=300, env=mpi_env())
    run = run_mpi(str(prog), 3, str(tmp_path / "many"), "4", timeout=300, env={"DISTRIBUTED": "1", "BY_SECS": "1"})
    assert run.returncode == 0, run.describe()   # every rank saved and summarized at rank 0's moments
    np.testing.assert_allclose(_numbers(run.stdout, "w"), _numbers(one.stdout, "w"), rtol=1e-5)
    saved = sorted(f for f in os.listdir(tmp_path / "many") if f.startswith("model.ckpt"))
    assert "model.ckpt-0" in saved and "model.ckpt-4" in saved
    assert len(_events(tmp_path / "many").Scalars("loss")) >= 1


def test_a_hook_without_the_hook_methods_is_refused_when_the_session_is_made():
    with tf.Graph().as_default():
        tf.train.get_or_create_global_step()
        with pytest.raises(TypeError, match="Expect: tf.train.SessionRunHook objects .* Actual: a object without "
                                            "begin, after_create_session, before_run, after_run, end"):
            tf.train.MonitoredSession(hooks=[object()])
