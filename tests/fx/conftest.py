"""ember.fx's tests put ember's public functions back as soon as each of their modules is
collected and after each test (importing ember.fx, as these modules do, makes the functions
proxy-aware: fx/_patching.py; a test's first Proxy makes them so again), so the rest of the
suite, collected and run after them, sees the functions themselves."""

import pytest


def _uninstall():
    from ember.fx import _patching

    _patching.uninstall()


def pytest_collectreport(report):
    _uninstall()


@pytest.fixture(autouse=True)
def _restore_public_functions():
    yield
    _uninstall()
