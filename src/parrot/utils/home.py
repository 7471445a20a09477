"""Where parrot keeps what it downloads or builds: `$PARROT_HOME`, else ~/.cache/parrot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_home() -> Path:
    """The cache root: `$PARROT_HOME`, else ~/.cache/parrot (read at call time)."""
    return home_from(os.environ)


def home_from(environ: Mapping[str, str]) -> Path:
    """The cache root an environment names: its PARROT_HOME, else ~/.cache/parrot."""
    env = environ.get("PARROT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "parrot"
