"""The TF1 battery's recurrent and embedding programs (tests/tf1_programs), run
unchanged through ``distnet run`` against TensorFlow 2.21's recorded lines,
the data-parallel ones also on 2 ranks with the weights of 1 rank."""
from __future__ import annotations

import pytest
from tf1_battery import (
    assert_same_weights,
    compare_with_reference,
    env_with,
    parse_lines,
    run_program,
)

pytestmark = pytest.mark.mpi


def test_lstm_row_classifier_static_rnn_from_contrib(tmp_path):
    one = run_program("lstm_row_classifier.py", env=env_with(STEPS=30, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(one, "lstm_row_classifier.py") == 4 * 3 + 1
    two = run_program("lstm_row_classifier.py", n=2, env=env_with(STEPS=30, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    # the printed figures are of fixed, unsharded batches: TensorFlow's, on 2 ranks too
    assert compare_with_reference(two, "lstm_row_classifier.py") == 4 * 3 + 1
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)


def test_char_rnn_language_model_multi_lstm_sequence_loss(tmp_path):
    one = run_program("char_rnn_lm.py", env=env_with(STEPS=30, OUT=tmp_path / "one.npz"))
    # contrib.seq2seq.sequence_loss is not in TF 2.21: the reference used its definition (record_reference's shim)
    assert compare_with_reference(one, "char_rnn_lm.py") == 2 + 3 * 2 + 1 + 2
    two = run_program("char_rnn_lm.py", n=2, env=env_with(STEPS=30, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert compare_with_reference(two, "char_rnn_lm.py", labels=["eval perplexity", "final state norms"]) == 3
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)


def test_bidirectional_gru_tagger_with_sequence_length():
    out = run_program("bigru_tagger.py", env=env_with(STEPS=60))
    assert compare_with_reference(out, "bigru_tagger.py") == 3 * 2 + 2 + 1


def test_sampled_softmax_language_model(tmp_path):
    one = run_program("sampled_softmax_lm.py", env=env_with(STEPS=60, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(one, "sampled_softmax_lm.py") == 1 + 3 * 2 + 2
    two = run_program("sampled_softmax_lm.py", n=2,
                      env=env_with(STEPS=60, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert compare_with_reference(two, "sampled_softmax_lm.py",
                                  labels=["initial full loss", "final full loss perplexity"]) == 3
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)
    # 3 ranks split the batch of 32 unevenly (11, 11, 10): the sample-weighted sum is still one process's step
    three = run_program("sampled_softmax_lm.py", n=3,
                        env=env_with(STEPS=60, OUT=tmp_path / "three.npz", DISTRIBUTED=1))
    assert compare_with_reference(three, "sampled_softmax_lm.py", labels=["final full loss perplexity"]) == 2
    assert_same_weights(tmp_path / "one.npz", tmp_path / "three.npz", rtol=1e-4, atol=2e-6)


def test_word2vec_skipgram_nce_loss(tmp_path):
    # Judged by properties (the sampler's draws are not TensorFlow's).  TensorFlow 2.21 ran this
    # program with STEPS=400 to: average loss 3.998 at step 50, 2.42-2.55 from step 150 on;
    # topic similarity 0.603, other 0.104; nearest to king: crown, royal, throne.
    one = run_program("word2vec_skipgram.py", env=env_with(STEPS=400, OUT=tmp_path / "one.npz"))
    got = parse_lines(one)
    losses = [line[1] for line in got["Average loss at step :"]]
    assert len(losses) == 8 and losses[0] > 3.5 and max(losses[2:]) < 2.7, losses
    same, other = got["topic similarity other similarity"][0]
    assert same > other + 0.25, (same, other)
    nearest = next(line for line in one.splitlines() if line.startswith("Nearest to king:"))
    assert len({"queen", "crown", "throne", "royal"} & set(nearest.replace(",", " ").split())) >= 2, nearest
    two = run_program("word2vec_skipgram.py", n=2, env=env_with(STEPS=400, OUT=tmp_path / "two.npz",
                                                                DISTRIBUTED=1))
    assert "Nearest to king:" in two
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)


def test_ptb_style_lm_carries_the_lstm_state_between_windows():
    # contrib.legacy_seq2seq is not in TF 2.21: the reference used its definition (record_reference's shim)
    out = run_program("ptb_style_lm.py", env=env_with(STEPS=60))
    assert compare_with_reference(out, "ptb_style_lm.py") == 6 * 2 + 1 + 1
