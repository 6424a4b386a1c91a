"""ember.multiprocessing (mnist_hogwild): tensors moved to shared memory are seen, and written,
by spawned processes; other tensors travel by value."""

import multiprocessing
import operator

import ember
import ember.multiprocessing as mp
import numpy as np


def _run(target, *args):
    p = mp.get_context("spawn").Process(target=target, args=args)
    p.start()
    p.join(120)
    assert p.exitcode == 0


def test_spawned_processes_write_into_shared_tensors_and_modules():
    shared = ember.arange(6.0).reshape(2, 3).share_memory_()
    private = ember.arange(6.0)
    assert shared.is_shared() and not private.is_shared()
    model = ember.nn.Linear(3, 2).share_memory()
    assert all(p.is_shared() for p in model.parameters())
    _run(operator.iadd, shared, 1.0)
    _run(operator.iadd, private, 1.0)
    # a Parameter arrives as a Parameter that still requires grad, on the same memory
    _run(ember.nn.init.constant_, model.weight, 3.0)
    np.testing.assert_array_equal(shared.numpy(), np.arange(6.0).reshape(2, 3) + 1)
    np.testing.assert_array_equal(private.numpy(), np.arange(6.0))
    np.testing.assert_array_equal(model.weight.detach().numpy(), np.full((2, 3), 3.0))
    assert model.weight.requires_grad


def test_the_standard_api_is_there():
    assert mp.Process is multiprocessing.Process and mp.set_start_method is not None
    t = ember.ones(3)
    assert t.share_memory_() is t and t.share_memory_() is t  # sharing twice is a no-op


_OWNER = """
import operator, sys
import ember
import ember.multiprocessing as mp

if __name__ == "__main__":
    shared = ember.zeros(4).share_memory_()
    for method in ("spawn", "fork"):
        p = mp.get_context(method).Process(target=operator.iadd, args=(shared, 1.0))
        p.start()
        p.join(120)
        assert p.exitcode == 0, method
    print(shared._shared_block().name, shared.tolist())
"""


def test_the_process_that_shares_a_tensor_removes_its_block_at_exit(tmp_path):
    # children attach without touching the resource tracker they share with the parent, and
    # the parent removes the block's name when it exits: no "leaked shared_memory" warning,
    # no tracker traceback, nothing left in /dev/shm
    import os
    import subprocess
    import sys

    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    name, values = out.stdout.split(" ", 1)
    assert values.strip() == "[2.0, 2.0, 2.0, 2.0]"
    assert "leaked" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    if os.path.isdir("/dev/shm"):
        assert not os.path.exists(os.path.join("/dev/shm", name.lstrip("/")))
