"""`parrot serve`: flags are checked, and a model that cannot load is one clear error."""

import os
import subprocess
import sys

from serve_helpers import free_port


def parrot(*args, timeout=60):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "parrot", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_a_bad_flag_value_exits_2_without_a_traceback():
    r = parrot("serve", "somewhere", "--max-batch", "0")
    assert r.returncode == 2
    assert "--max-batch must be at least 1" in r.stderr and "Traceback" not in r.stderr


def test_a_missing_model_stops_the_server_with_its_reason(tmp_path):
    r = parrot("serve", str(tmp_path / "nothing"), "--port", str(free_port()))
    assert r.returncode == 2
    assert "Could not serve" in r.stderr and "nothing" in r.stderr
    assert "Traceback" not in r.stderr
