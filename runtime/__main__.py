"""`python -m ember.runtime info|run FILE ...`: see runtime/cli.py."""

import sys

from .cli import main

sys.exit(main())
