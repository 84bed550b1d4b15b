"""A regression and a binary classification on 2 and 3 ranks give the single process's weights,
losses and metrics (mae / accuracy summed over the ranks' shards; issue 23, item 5)."""
from __future__ import annotations

import numpy as np
import pytest

from mpi_util import run_script

SCRIPT = "train_tabular.py"


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_tabular_task_on_n_ranks_equals_one(tmp_path, task):
    single = run_script(SCRIPT, tmp_path, f"{task}-single", "--task", task, timeout=300)
    assert len(single["losses"]) == 12 and len(single["test_metric"]) == 2
    assert single["losses"][-1] < single["losses"][0]   # it trained
    for nranks in (2, 3):
        res = run_script(SCRIPT, tmp_path, f"{task}-n{nranks}", "--task", task, nprocs=nranks, timeout=300)
        params = sorted(k for k in single if k.startswith("param:"))
        assert params == sorted(k for k in res if k.startswith("param:"))
        for k in params:
            np.testing.assert_allclose(res[k], single[k], rtol=0, atol=1e-5, err_msg=k)
        for key in ("losses", "metric", "test_loss", "test_metric"):
            np.testing.assert_allclose(res[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f"{key} on {nranks}")
