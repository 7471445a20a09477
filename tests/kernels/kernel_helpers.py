"""Running Python in a fresh process with a chosen kernel environment (PARROT_HOME, CC, PATH)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def env_for(home: Path, **changes: str) -> dict[str, str]:
    env = {**os.environ, "PARROT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("PARROT_NATIVE", None)
    env.pop("CC", None)
    env.update(changes)
    return env


def run_python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
