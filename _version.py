"""ember's version, pyproject.toml's (tests/test_version.py): a leaf module every layer may
import (the kernel cache keys compiled code by it)."""

__version__ = "0.1.0"
