"""Fixtures of the runtime tests: the thread budget of the GEMM paths' tests
(test_packed_gemm.py, test_column_sums.py)."""

import os

import pytest
from ember.runtime import native, threads


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def budget(request, monkeypatch):
    """The thread budget at one thread, or at two with the pool started."""
    monkeypatch.setattr(threads._budget, "now", lambda: request.param)
    if request.param == 2:
        if (os.cpu_count() or 1) < 2:
            pytest.skip("one core: no pool")
        native._pool._started()
        if native._pool.threads() < 2:
            pytest.skip("no pool workers in this process")
    return request.param
