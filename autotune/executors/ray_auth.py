"""Ray's token authentication, for the clients autotune makes: joining a cluster and its job server.

Ray 2.60 heads authenticate by token, but Ray turns token mode on by itself only for ``address=auto``.
When the user has the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or the file ``ray start --head``
writes) and chose no mode, autotune uses token mode, the way Ray does.  One place for it: the executor and
the service both call :func:`enable_token_auth`.
"""

from __future__ import annotations

import os
from pathlib import Path

TOKEN_FILE = Path.home() / ".ray" / "auth_token"
MODE_VARIABLE = "RAY_AUTH_MODE"


def token_at_hand() -> bool:
    """Whether this process can find a token to send."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or TOKEN_FILE.exists())


def enable_token_auth() -> None:
    """Token mode when the token is at hand and no mode was chosen; Ray's view of the mode made current.

    Ray reads the mode into its configuration once per process: a mode chosen in the environment after
    that (by a test, or a caller) is taken in here too, so a client sends the token it should."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:  # another Ray version: the environment variable alone, before ray.init
        if MODE_VARIABLE not in os.environ and token_at_hand():
            os.environ[MODE_VARIABLE] = "token"
        return
    mode = os.environ.get(MODE_VARIABLE)
    if mode is None:
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    elif mode.lower() == "token":
        setup._enable_token_auth()  # noqa: SLF001 - sets the same variable and refreshes Ray's configuration


__all__ = ["MODE_VARIABLE", "TOKEN_FILE", "enable_token_auth", "token_at_hand"]
