"""The TF1 battery's input-pipeline programs (tests/tf1_programs/): tf.data,
the queue readers and input_data, run unchanged through ``distnet run`` and
judged against TensorFlow 2.21's recorded lines (tests/tf1_programs/reference/),
the data-parallel ones also on 2 ranks against one process's weights."""
from __future__ import annotations

from tf1_battery import assert_same_weights, compare_with_reference, parse_lines, run_program


def test_data_pipeline_shard_one_process_near_tf_and_two_ranks_the_same(tmp_path):
    name, env = "data_pipeline_shard.py", {"STEPS": "40"}
    one = run_program(name, env={**env, "OUT": str(tmp_path / "one.npz")})
    # The shuffle's order is distnet's own draw, not TensorFlow's: after 40 steps on other
    # batches of the same data the model must land where TensorFlow's did, not on its digits.
    assert compare_with_reference(one, name, rtol=2e-2, atol=2e-2) == 2
    loss, acc = parse_lines(one)["final loss accuracy"][0]
    assert loss < 0.3 and acc > 0.85
    two = run_program(name, n=2, env={**env, "DISTRIBUTED": "1", "OUT": str(tmp_path / "two.npz")})
    assert parse_lines(two)["final loss accuracy"] == parse_lines(one)["final loss accuracy"]
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_data_train_validation_epochs_end_by_out_of_range_as_in_tf(tmp_path):
    name = "data_train_validation.py"
    one = run_program(name, env={"OUT": str(tmp_path / "one.npz")})
    assert compare_with_reference(one, name, rtol=1e-4, atol=1e-5) == 4 * 5
    two = run_program(name, n=2, env={"DISTRIBUTED": "1", "OUT": str(tmp_path / "two.npz")})
    assert compare_with_reference(two, name, rtol=1e-4, atol=1e-5) == 4 * 5
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_queue_csv_reader_matches_tf():
    name = "queue_csv_reader.py"
    out = run_program(name)
    # 4 loss lines, the step count, 3 weights and the bias.
    assert compare_with_reference(out, name, rtol=1e-4, atol=1e-5) == 4 * 2 + 1 + 4


def test_padded_text_pipeline_matches_tf_on_one_process_and_two_ranks(tmp_path):
    name = "data_padded_text.py"
    one = run_program(name, env={"OUT": str(tmp_path / "one.npz")})
    assert compare_with_reference(one, name, rtol=1e-4, atol=1e-5) == 4 * 2 + 3
    two = run_program(name, n=2, env={"DISTRIBUTED": "1", "OUT": str(tmp_path / "two.npz")})
    assert compare_with_reference(two, name, rtol=1e-4, atol=1e-5) == 4 * 2 + 3
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_mnist_input_data_script_runs_unchanged_on_one_process_and_two_ranks(tmp_path):
    # TensorFlow 2.21 has no tensorflow.examples: judged by properties (see the program).
    for n in (1, 2):
        env = {"STEPS": "150", "OUT": str(tmp_path / f"{n}.npz")}
        if n == 2:
            env["DISTRIBUTED"] = "1"
        out = run_program("mnist_input_data_mlp.py", n=n, env=env)
        data_lines = [line for line in out.splitlines() if line.startswith("input_data: read ")]
        # One line per worker saying what it read (two workers' lines may interleave).
        assert data_lines and "no download" in data_lines[0] and out.count("no download") == n
        assert "fashion_mnist" in data_lines[0] and "validation" in data_lines[0]
        losses = [row[1] for row in parse_lines(out)["step loss"]]
        assert len(losses) == 6 and losses[0] > 2.0 and max(losses[-2:]) < 1.0
        assert parse_lines(out)["test accuracy"][0][0] > 0.7
    assert_same_weights(tmp_path / "1.npz", tmp_path / "2.npz", rtol=1e-4, atol=1e-6)


def test_csv_shards_through_list_files_and_interleave_match_tf_and_shard_by_file(tmp_path):
    name = "data_csv_files.py"
    one = run_program(name, env={"OUT": str(tmp_path / "one.npz")})
    assert compare_with_reference(one, name, rtol=1e-4, atol=1e-5) == 3 * 2 + 4
    two = run_program(name, n=2, env={"DISTRIBUTED": "1", "OUT": str(tmp_path / "two.npz")})
    assert compare_with_reference(two, name, rtol=1e-4, atol=1e-5) == 3 * 2 + 4
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_reinitializable_iterator_switching_train_and_validation_matches_tf(tmp_path):
    name = "data_reinitializable.py"
    one = run_program(name, env={"OUT": str(tmp_path / "one.npz")})
    assert compare_with_reference(one, name, rtol=1e-4, atol=1e-5) == 5 * 3
    two = run_program(name, n=2, env={"DISTRIBUTED": "1", "OUT": str(tmp_path / "two.npz")})
    assert compare_with_reference(two, name, rtol=1e-4, atol=1e-5) == 5 * 3
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")
