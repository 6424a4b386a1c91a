"""Shared test set-up: tests marked `cuda` skip without a usable GPU."""

import pytest


def pytest_collection_modifyitems(config, items):
    import ember

    if ember.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (cupy missing or no GPU)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
