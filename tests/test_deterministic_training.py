"""Pieces + the exact sum make training bitwise the same on 1, 2, 3 and 4 ranks.

The prototype loop of tests/mpi_scripts/deterministic_train.py (MLP, dropout, Adam,
a partial last batch, uneven pieces per rank): every weight, every Adam slot and
every step's loss must have the same bits as a single plain process.
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi_util import run_script


@pytest.mark.mpi
def test_one_to_four_ranks_train_bit_for_bit_alike(tmp_path):
    one = run_script("deterministic_train.py", tmp_path, "one", 12, 22, 3)
    assert len(one["losses"]) == 12 and np.all(np.isfinite(one["losses"]))
    assert sum(k.startswith("slot/") for k in one) == 12 and sum(k.startswith("var/") for k in one) == 6
    for n in (2, 3, 4):
        got = run_script("deterministic_train.py", tmp_path, f"n{n}", 12, 22, 3, nprocs=n, timeout=180)
        assert sorted(got) == sorted(one)
        differ = [k for k in one if one[k].tobytes() != got[k].tobytes()]
        assert not differ, f"{n} ranks: arrays differ from 1 process: {differ}"


@pytest.mark.mpi
def test_another_piece_size_is_the_same_training_up_to_rounding(tmp_path):
    # The same job with another piece size is another computation: its losses agree to
    # float rounding only (this is why the piece size comes from the job, never from N).
    a = run_script("deterministic_train.py", tmp_path, "p3", 4, 22, 3)
    b = run_script("deterministic_train.py", tmp_path, "p5", 4, 22, 5)
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)


@pytest.mark.mpi
def test_trainer_deterministic_is_bitwise_on_1_2_3_ranks(tmp_path):
    # Trainer(deterministic=True): MLP, dropout, L2 regularizer, Adam, a partial last batch
    one = run_script("deterministic_trainer.py", tmp_path, "one")
    assert len(one["losses"]) == 12 and np.all(np.isfinite(one["losses"]))
    assert any(k.startswith("slot/") for k in one) and any(k.startswith("var/") for k in one)
    for n in (2, 3):
        got = run_script("deterministic_trainer.py", tmp_path, f"n{n}", nprocs=n, timeout=180)
        assert sorted(got) == sorted(one)
        differ = [k for k in one if one[k].tobytes() != got[k].tobytes()]
        assert not differ, f"{n} ranks: arrays differ from 1 process: {differ}"


def test_trainer_deterministic_refuses_what_it_does_not_cover():
    import distnet
    from distnet import layers
    from distnet.data import ArrayDataset
    from distnet.errors import InvalidArgumentError
    from distnet.training.trainer import Trainer

    x = np.zeros((8, 2, 2), np.float32)
    data = ArrayDataset(x, np.zeros(8, np.int64), num_classes=2)

    def build(**kw):
        model = distnet.Sequential([layers.Flatten(), layers.Dense(2)], input_shape=(2, 2, 1), seed=0)
        return Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.1), data,
                       global_batch_size=4, steps=1, log_every=1000, **{"strategy": "replicated", **kw})

    # pieces replace micro-batches: accepted (users' jobs set it), without effect
    assert build(deterministic=True, micro_batches=2).deterministic
    with pytest.raises(InvalidArgumentError, match="Expect: a strategy without compression or overlap.*compression"):
        build(deterministic=True, strategy_options={"compression": "float16"})
    with pytest.raises(InvalidArgumentError, match="Expect: a strategy without compression or overlap.*overlap"):
        build(deterministic=True, strategy_options={"overlap": True})
    with pytest.raises(InvalidArgumentError, match="zero1.*compression"):
        build(deterministic=True, strategy="zero1", strategy_options={"compression": "float16"})
    with pytest.raises(InvalidArgumentError, match="conv_algorithm.*Actual: 'auto'"):
        build(deterministic=True, conv_algorithm="auto")
    # batch normalization: accepted, per-piece statistics (tests/test_deterministic_batch_norm.py);
    # its moving statistics are the same on every rank, so the parameter check covers them
    bn = distnet.Sequential([layers.Flatten(), layers.BatchNorm(), layers.Dense(2)], input_shape=(2, 2, 1), seed=0)
    bn_trainer = Trainer(bn, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.1), data,
                         global_batch_size=4, steps=1, log_every=1000, deterministic=True)
    assert bn_trainer.deterministic and bn_trainer._bn_layers == [] and not bn_trainer._bn_global
    assert {v.name for v in bn_trainer.agreed_variables} >= {"batch_normalization/moving_mean",
                                                             "batch_normalization/moving_variance"}
    with pytest.raises(InvalidArgumentError, match="piece_size"):
        build(deterministic=True, piece_size=0)
    with pytest.raises(InvalidArgumentError, match="deterministic"):
        build(deterministic="yes")
    assert build(deterministic=True).piece_size == 4      # one piece below 64 samples


@pytest.mark.mpi
def test_trainer_deterministic_stopped_on_2_resumed_on_3_equals_1_uninterrupted(tmp_path):
    one = run_script("deterministic_trainer.py", tmp_path, "one")
    ckpt = tmp_path / "ckpt"
    run_script("deterministic_trainer.py", tmp_path, "first", "--ckpt", ckpt, "--stop-at", 5, nprocs=2, timeout=180)
    got = run_script("deterministic_trainer.py", tmp_path, "rest", "--ckpt", ckpt, "--resume", nprocs=3, timeout=180)
    assert got["losses"].tobytes() == one["losses"][5:].tobytes()
    differ = [k for k in one if k != "losses" and one[k].tobytes() != got[k].tobytes()]
    assert not differ, f"2 -> 3 resume: arrays differ from the uninterrupted 1-process run: {differ}"
