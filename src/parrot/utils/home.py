"""Where parrot keeps what it downloads or builds: `$PARROT_HOME`, else ~/.cache/parrot."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """The cache root: `$PARROT_HOME`, else ~/.cache/parrot (read at call time)."""
    env = os.environ.get("PARROT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "parrot"
