"""A net with an LSTM and a GRU trained on N ranks under mpiexec equals the
single-process run (53 samples in batches of 10: uneven shards on 2 and 3
ranks, a partial last batch; a recurrent regularizer counted once)."""
from __future__ import annotations

import numpy as np
import pytest

from mpi_util import run_script

pytestmark = pytest.mark.mpi
SCRIPT = "train_recurrent.py"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return run_script(SCRIPT, tmp_path_factory.mktemp("single"), "single", timeout=300)


@pytest.mark.parametrize("nranks,micro", [(2, 1), (3, 2)])
def test_recurrent_net_on_n_ranks_equals_one(single, tmp_path, nranks, micro):
    res = run_script(SCRIPT, tmp_path, f"n{nranks}", "--micro", micro, nprocs=nranks, timeout=300)
    params = sorted(k for k in single if k.startswith("param:"))
    assert params == sorted(k for k in res if k.startswith("param:"))
    assert {"param:lstm/recurrent_kernel", "param:gru/bias", "param:dense/kernel"} <= set(params)
    for k in params:
        np.testing.assert_allclose(res[k], single[k], rtol=0, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    # training moved the weights: the comparison is not between two untouched initialisations
    assert len(single["losses"]) == 8 and single["losses"][-1] < single["losses"][0]
