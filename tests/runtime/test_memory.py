"""runtime/memory.py: glibc's thresholds set once when tensors load, unless EMBER_MALLOC says
to leave the C allocator alone."""

import os
import subprocess
import sys

import pytest

CHECK = """
import ctypes, sys
import ember
ember.ones(3)  # loads the tensor layer, which applies the policy
from ember.runtime import memory
print(memory._applied)
"""


def _run(env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         env=env, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_policy_is_applied_on_glibc_and_left_out_with_ember_malloc_default():
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        pytest.skip("not glibc")
    assert _run({}) == "True"
    assert _run({"EMBER_MALLOC": "default"}) == "False"


def test_tune_malloc_is_applied_once_and_answers_the_same_after():
    from ember.runtime import memory

    first = memory.tune_malloc()
    assert memory.tune_malloc() is first
