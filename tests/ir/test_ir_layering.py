"""The graph, text form, verifier, JSON form and passes load nothing of ember outside ir/ and
errors.py: the compiler's lower layers can use them without the runtime."""

import json
import os
import subprocess
import sys

import pytest

REPO_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


@pytest.mark.parametrize(
    "module",
    [
        "ember.ir.graph",
        "ember.ir.parser",
        "ember.ir.verify",
        "ember.ir.serialize",
        "ember.ir.passes",
    ],
)
def test_ir_modules_load_only_ir_and_errors(module):
    code = (
        f"import sys, json, {module}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('ember.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_PARENT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert module in loaded
    outside = [m for m in loaded if not (m.startswith("ember.ir") or m == "ember.errors")]
    assert not outside, f"import {module} loaded {outside}"
