"""TF1 battery: the programs of tf.metrics, summaries, MonitoredTrainingSession
and contrib.layers/arg_scope (tests/tf1_programs/), run unchanged with
``distnet run``, against the lines real TensorFlow 2.21 printed
(tests/tf1_programs/reference/, recorded by record_reference.py; the contrib
program against tf-slim, TF 1.x's contrib code), and on 2 ranks against one."""
from __future__ import annotations

import numpy as np
import pytest

from tf1_battery import assert_same_weights, compare_with_reference, env_with, parse_lines, run_program


def test_monitored_training_loop_matches_tensorflow_and_two_ranks_match_one(tmp_path):
    one = run_program("monitored_training_loop.py", env=env_with(STEPS=20, OUT=tmp_path / "one.npz"))
    # step 1, 5, 10, 15, 20 (2 numbers each), the checkpoint step, 6 weights
    assert compare_with_reference(one, "monitored_training_loop.py", rtol=1e-4, atol=1e-6) == 5 * 2 + 1 + 6
    two = run_program("monitored_training_loop.py", n=2,
                      env=env_with(STEPS=20, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert parse_lines(two)["checkpoint"] == [[20.0]]       # StopAtStepHook ended both ranks at step 20
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_ema_train_then_eval_matches_tensorflow_and_two_ranks_evaluate_globally(tmp_path):
    one = run_program("ema_train_then_eval.py",
                      env=env_with(STEPS=30, OUT=tmp_path / "one.npz", TRAIN_DIR=tmp_path / "one"))
    assert compare_with_reference(one, "ema_train_then_eval.py", rtol=1e-4, atol=2e-6) == 3 * 2 + 4 * 2 + 2 + 12
    (tmp_path / "two").mkdir()
    two = run_program("ema_train_then_eval.py", n=2,
                      env=env_with(STEPS=30, OUT=tmp_path / "two.npz", TRAIN_DIR=tmp_path / "two", DISTRIBUTED=1))
    # Each rank evaluated half of each test batch; tf.metrics.accuracy is the whole set's.
    for label in ("eval batch running accuracy", "global step precision", "averaged weights"):
        np.testing.assert_allclose(parse_lines(two)[label], parse_lines(one)[label], rtol=1e-5, err_msg=label)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_streaming_metrics_eval_matches_tensorflow_and_three_ranks_match_one(tmp_path):
    one = run_program("streaming_metrics_eval.py", env=env_with(STEPS=25, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(one, "streaming_metrics_eval.py", rtol=1e-4, atol=2e-6) == 7 * 2 + 16
    three = run_program("streaming_metrics_eval.py", n=3,
                        env=env_with(STEPS=25, OUT=tmp_path / "three.npz", DISTRIBUTED=1))
    got, want = parse_lines(three), parse_lines(one)
    assert sorted(got) == sorted(want)
    for label in want:
        np.testing.assert_allclose(got[label], want[label], rtol=1e-5, atol=2e-6, err_msg=label)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "three.npz")


def _events(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0,
                                                                          "tensors": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_summaries_autoencoder_matches_tensorflow_and_writes_the_events(tmp_path):
    from PIL import Image
    from tensorboard.util import tensor_util

    one = run_program("summaries_autoencoder.py",
                      env=env_with(STEPS=30, OUT=tmp_path / "one.npz", LOGDIR=tmp_path / "one"))
    assert compare_with_reference(one, "summaries_autoencoder.py", rtol=1e-4, atol=1e-6) == 6 * 2 + 6
    acc = _events(tmp_path / "one")
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == ["summaries/learning_rate", "summaries/loss"]
    # TF1's tag: the variable already took the name "encoder/weights" (TF 2.21 writes "encoder/weights_1" too)
    assert tags["histograms"] == ["encoder/weights_1"] and tags["tensors"] == ["settings"]
    assert sorted(tags["images"]) == ["input/image/0", "input/image/1", "reconstruction/image/0",
                                      "reconstruction/image/1"]
    printed = parse_lines(one)["step loss"]
    written = acc.Scalars("summaries/loss")
    assert [e.step for e in written] == [r[0] for r in printed]
    np.testing.assert_allclose([e.value for e in written], [r[1] for r in printed], atol=1e-6)   # printed %.6f
    assert [e.value for e in acc.Scalars("summaries/learning_rate")] == \
        pytest.approx([0.5, 0.5, 0.4, 0.4, 0.32, 0.32], rel=1e-6)
    assert [h.step for h in acc.Histograms("encoder/weights_1")] == [0, 5, 10, 15, 20, 25]
    text = tensor_util.make_ndarray(acc.Tensors("settings")[0].tensor_proto).tolist()
    assert text == b'{"batch": 24, "hidden": 6, "learning_rate": 0.5}'
    import io

    first = acc.Images("input/image/0")[0]
    assert (first.step, first.width, first.height) == (0, 4, 4)
    assert np.asarray(Image.open(io.BytesIO(first.encoded_image_string))).max() == 255   # TF1: the brightest is 255

    # On 2 ranks every rank runs the summaries; the loss written is the global batch's.
    two = run_program("summaries_autoencoder.py", n=2,
                      env=env_with(STEPS=30, OUT=tmp_path / "two.npz", LOGDIR=tmp_path / "two", DISTRIBUTED=1))
    assert "final decoder" in two
    np.testing.assert_allclose([e.value for e in _events(tmp_path / "two").Scalars("summaries/loss")],
                               [e.value for e in written], rtol=1e-5)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_contrib_arg_scope_cnn_matches_tf_slim_and_two_ranks_match_one(tmp_path):
    one = run_program("contrib_arg_scope_cnn.py", env=env_with(STEPS=15, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(one, "contrib_arg_scope_cnn.py", rtol=1e-4, atol=1e-6) == 2 + 2 + 3 * 3 + 1 + 5
    names = next(line for line in one.splitlines() if line.startswith("names "))
    assert names.split()[1:] == ["conv1_biases", "conv1_weights", "conv2_biases", "conv2_weights", "fc3_biases",
                                 "fc3_weights", "logits_biases", "logits_weights"]   # TF1's contrib names
    run_program("contrib_arg_scope_cnn.py", n=2, env=env_with(STEPS=15, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)


def test_slim_monitored_metrics_matches_tf_slim_and_two_ranks_match_one(tmp_path):
    one = run_program("slim_monitored_metrics.py",
                      env=env_with(STEPS=12, OUT=tmp_path / "one.npz", LOGDIR=tmp_path / "one"))
    assert compare_with_reference(one, "slim_monitored_metrics.py", rtol=1e-4, atol=2e-6) == 3 * 2 + 6
    assert "variables conv1/conv1_1/weights conv1/conv1_1/biases conv1/conv1_2/weights" in one   # slim.repeat
    two = run_program("slim_monitored_metrics.py", n=2,
                      env=env_with(STEPS=12, OUT=tmp_path / "two.npz", LOGDIR=tmp_path / "two", DISTRIBUTED=1))
    # The running accuracy of tf.metrics is the global batch's: the same lines as one process.
    np.testing.assert_allclose(parse_lines(two)["step running accuracy"],
                               parse_lines(one)["step running accuracy"], rtol=1e-6)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)
    # Summaries saved at steps 1, 5, 9 on every rank, written by rank 0 with the global loss.
    # TF1's tag: get_total_loss() already named an op "total_loss", so the summary is "total_loss_1".
    a, b = _events(tmp_path / "one").Scalars("total_loss_1"), _events(tmp_path / "two").Scalars("total_loss_1")
    assert [e.step for e in a] == [e.step for e in b] == [1, 5, 9]
    np.testing.assert_allclose([e.value for e in b], [e.value for e in a], rtol=1e-5)


def test_contrib_optimize_loss_matches_tf_slim_and_two_ranks_match_one(tmp_path):
    one = run_program("contrib_optimize_loss.py", env=env_with(STEPS=20, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(one, "contrib_optimize_loss.py", rtol=1e-4, atol=1e-6) == 5 * 4 + 2
    # A DistributedOptimizer made by optimize_loss's optimizer function: the clip is the global gradient's,
    # and the summaries (loss, gradient norm) are the global batch's: the same lines as one process.
    two = run_program("contrib_optimize_loss.py", n=2,
                      env=env_with(STEPS=20, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    got, want = parse_lines(two), parse_lines(one)
    assert sorted(got) == sorted(want)
    for label in want:
        np.testing.assert_allclose(got[label], want[label], rtol=2e-5, err_msg=label)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")
