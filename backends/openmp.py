"""ember.backends.openmp: ember's CPU kernels share the cores through its own native pool,
not OpenMP."""


def is_available() -> bool:
    return False
