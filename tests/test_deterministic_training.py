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
