"""How tensors reach the communication library, and how DDP groups gradients: in-process."""

import ember
import numpy as np
from ember.distributed._common import _Buffer, _send_copy
from ember.nn.parallel._reducer import compute_buckets


def test_a_contiguous_tensor_is_handed_over_without_a_copy():
    t = ember.arange(6, dtype=ember.float32).reshape(2, 3)
    buffer = _Buffer(t, write=True)
    assert buffer.array is t._data  # MPI reads and writes the tensor's own memory
    buffer.array[...] = 7
    buffer.finish()
    assert t.tolist() == [[7.0] * 3] * 2


def test_a_non_contiguous_tensor_goes_through_a_copy_written_back_at_the_end():
    base = ember.arange(6, dtype=ember.float32).reshape(2, 3)
    t = base.t()
    buffer = _Buffer(t, write=True)
    assert buffer.array.flags.c_contiguous and not np.shares_memory(buffer.array, t._data)
    np.testing.assert_array_equal(buffer.array, t.numpy())
    buffer.array[...] = np.arange(6).reshape(3, 2) * 10
    assert base.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]  # not before the end
    buffer.finish()
    assert t.tolist() == [[0.0, 10.0], [20.0, 30.0], [40.0, 50.0]]
    assert base.tolist() == [[0.0, 20.0, 40.0], [10.0, 30.0, 50.0]]


def test_an_input_that_overlaps_an_output_is_sent_from_a_copy():
    out = ember.zeros(6)
    part = out[:3]
    assert _send_copy(part, [out]) is not part._data
    alone = ember.ones(3)
    assert _send_copy(alone, [out]) is alone._data


def _params(*specs):
    return [ember.zeros(n, dtype=dtype) for n, dtype in specs]


def test_buckets_follow_reverse_registration_order_per_dtype_under_the_cap():
    params = _params((10, "float32"), (10, "float32"), (3, "float64"), (10, "float32"))
    # 40 bytes per float32 parameter; a cap of 80 bytes closes a bucket at the second one
    assert compute_buckets(params, cap_bytes=80, first_cap_bytes=40) == [[3], [2], [1, 0]]
    assert compute_buckets(params, cap_bytes=10**6) == [[3, 1, 0], [2]]


def test_the_first_bucket_is_small_so_that_communication_starts_early():
    params = _params(*[(256, "float32")] * 6)  # 1 KiB each
    buckets = compute_buckets(params, cap_bytes=4096, first_cap_bytes=1024)
    assert buckets == [[5], [4, 3, 2, 1], [0]]
