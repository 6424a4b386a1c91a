"""ember.__version__ is pyproject.toml's version: the kernel cache keys compiled code by it
(codegen/llvm/cache.py), so a release that changes the version never loads another's code."""

import pathlib

import ember
import tomllib
from ember.codegen.llvm import cache


def test_the_package_version_is_pyprojects_and_keys_the_kernel_cache():
    root = pathlib.Path(ember.__file__).parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert ember.__version__ == project["version"]
    assert cache._ember_version() == project["version"]
    from ember import _version

    before = cache.cache_key("; ir")
    try:
        _version.__version__ = project["version"] + ".1"
        cache._ember_version.cache_clear()
        assert cache.cache_key("; ir") != before
    finally:
        _version.__version__ = project["version"]
        cache._ember_version.cache_clear()
