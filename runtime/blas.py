"""The GEMM of the BLAS numpy already loaded, as raw function pointers native code can call.

numpy's wheels bundle OpenBLAS built for 64-bit integers (ILP64) with its symbols renamed:
`scipy_cblas_sgemm64_(order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)`
takes int64 sizes (the enums stay C ints). A system OpenBLAS or reference CBLAS exports
`cblas_sgemm` with 32-bit sizes, unless its config says USE64BITINT. So a symbol is used only
with an integer width its name or its library's configuration vouches for, and only after a
probe call through exactly that ABI gives numpy's own product; otherwise there is none, and
the graphs that need one run as before (runtime/graph_entry.py).
"""

from __future__ import annotations

import ctypes
import functools
from typing import NamedTuple

import numpy as np

from .threads import _openblas_paths

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# (symbol of sgemm, of dgemm, integer bits): the ILP64 names first, as numpy's wheels have them
_CANDIDATES = (
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", 64),
    ("cblas_sgemm64_", "cblas_dgemm64_", 64),
    ("cblas_sgemm", "cblas_dgemm", None),  # the width its library's config names
)
_CONFIG = ("scipy_openblas_get_config64_", "openblas_get_config64_", "openblas_get_config")


class Gemm(NamedTuple):
    """Addresses of cblas sgemm and dgemm, the width of their integer arguments, and where
    they come from."""

    sgemm: int
    dgemm: int
    int_bits: int
    path: str
    symbols: tuple


def _signature(real, bits: int):
    index = ctypes.c_int64 if bits == 64 else ctypes.c_int32
    enum = ctypes.c_int
    return ctypes.CFUNCTYPE(None, enum, enum, enum, index, index, index, real, ctypes.c_void_p,
                            index, ctypes.c_void_p, index, real, ctypes.c_void_p, index)


def _config_bits(library) -> int | None:
    """64 or 32 from the library's OpenBLAS config string, None when it has none."""
    for name in _CONFIG:
        fn = getattr(library, name, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            return 64 if b"USE64BITINT" in (fn() or b"") else 32
    return None


def _probe(address: int, bits: int, dtype) -> bool:
    """Whether C = A @ B.T (3x5 by 4x5) through this ABI equals numpy's, with beta = 0
    writing over a C full of NaN (so a wrongly read beta shows)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal((4, 5)).astype(dtype)
    c = np.full((3, 4), np.nan, dtype)
    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    fn = _signature(real, bits)(address)
    fn(ROW_MAJOR, NO_TRANS, TRANS, 3, 4, 5, 1.0, a.ctypes.data, 5, b.ctypes.data, 5, 0.0,
       c.ctypes.data, 4)
    return bool(np.allclose(c, a @ b.T, rtol=1e-5, atol=1e-5))


@functools.cache
def gemm() -> Gemm | None:
    """numpy's BLAS GEMMs, checked by a probe call each; None where none is found."""
    for path in _openblas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for s_name, d_name, bits in _CANDIDATES:
            s, d = getattr(library, s_name, None), getattr(library, d_name, None)
            if s is None or d is None:
                continue
            if bits is None:
                bits = _config_bits(library)
                if bits is None:
                    continue
            s_address = ctypes.cast(s, ctypes.c_void_p).value
            d_address = ctypes.cast(d, ctypes.c_void_p).value
            if _probe(s_address, bits, np.float32) and _probe(d_address, bits, np.float64):
                return Gemm(s_address, d_address, bits, path, (s_name, d_name))
    return None


def layout(a: np.ndarray) -> tuple[int, int] | None:
    """(NO_TRANS or TRANS, leading dimension): how a row-major cblas GEMM reads the 2-D array
    a in place, or None when its strides fit neither row- nor column-major storage (a dim of
    one takes any stride)."""
    item = a.itemsize
    rows, cols = a.shape
    row_step = a.strides[0] if rows > 1 else cols * item
    col_step = a.strides[1] if cols > 1 else item
    if col_step == item and row_step % item == 0 and row_step >= cols * item:
        return NO_TRANS, row_step // item
    if row_step == item and col_step % item == 0 and col_step >= rows * item:
        return TRANS, col_step // item
    return None


@functools.cache
def cblas_gemm(dtype_name: str):
    """numpy's cblas sgemm ("float32") or dgemm ("float64") as a ctypes function of the
    signature above, for eager kernels that need what np.matmul does not offer (beta = 1 onto
    an output they filled); None where there is no checked GEMM."""
    found = gemm()
    if found is None or dtype_name not in ("float32", "float64"):
        return None
    real, address = ((ctypes.c_float, found.sgemm) if dtype_name == "float32"
                     else (ctypes.c_double, found.dgemm))
    return _signature(real, found.int_bits)(address)
