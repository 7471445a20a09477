"""Where parrot keeps what it downloads or builds: `$PARROT_HOME`, else ~/.cache/parrot.

Only the API and the CLI read the environment; they pass `home_from(os.environ)` down.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def home_from(environ: Mapping[str, str]) -> Path:
    """The cache root an environment names: its PARROT_HOME, else ~/.cache/parrot."""
    env = environ.get("PARROT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "parrot"
