"""Token authentication for the Ray clients autotune makes (autotune.executors.ray_auth)."""

from __future__ import annotations

import subprocess
import sys

FRESH_PROCESS = r'''
import os
os.environ["RAY_AUTH_MODE"] = "disabled"
from ray._private.authentication.authentication_utils import is_token_auth_enabled
from ray._raylet import Config
Config.initialize("")
assert not is_token_auth_enabled()
os.environ["RAY_AUTH_MODE"] = "token"  # chosen after Ray read its configuration, as a test or a caller may
assert not is_token_auth_enabled(), "Ray now rereads the mode by itself: enable_token_auth can be simpler"
from autotune.executors.ray_auth import enable_token_auth
enable_token_auth()
assert is_token_auth_enabled(), "the mode chosen in the environment was not taken in"
os.environ["RAY_AUTH_MODE"] = "disabled"
enable_token_auth()  # a mode the user chose is left alone
assert os.environ["RAY_AUTH_MODE"] == "disabled"
print("ok")
'''


def test_a_mode_chosen_after_ray_read_its_configuration_is_taken_in() -> None:
    """Ray reads the authentication mode once per process; a job client made after the mode was set to
    token in the environment must send the token (else: 'Missing authentication token')."""
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
