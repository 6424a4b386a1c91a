"""An uncaught EmberError shows the user's frames only, unless EMBER_TRACEBACK=full."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import ember
    x = ember.ones(3)
    y = ember.ones(4)
    x + y
    """
)


def _run(tmp_path, **env):
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode != 0
    return result.stderr


def test_internal_frames_are_filtered(tmp_path):
    err = _run(tmp_path, EMBER_TRACEBACK="")
    assert 'user_script.py", line 5' in err
    assert "dispatch.py" not in err and "schema.py" not in err
    assert "must match the size" in err and "user_script.py:5" in err


def test_full_traceback_on_request(tmp_path):
    err = _run(tmp_path, EMBER_TRACEBACK="full")
    assert "dispatch.py" in err and 'user_script.py", line 5' in err
