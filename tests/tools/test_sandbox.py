"""Escape attempts against the sandbox: each is contained and says clearly what happened."""

import os
import shutil
from pathlib import Path

import pytest

from parrot.errors import ParrotError
from parrot.tools import sandbox
from parrot.tools.sandbox import Limits, run_python

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
QUICK = Limits(wall_seconds=3.0, cpu_seconds=2)


def _running(uid: int) -> list[int]:
    """PIDs of `uid`'s processes that still run (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and sandbox._alive(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _sandbox_uid() -> int:
    return sandbox.NOBODY if os.getuid() == 0 else os.getuid()


def test_a_program_runs_and_its_output_comes_back():
    result = run_python("print(sum(range(10)))")
    assert result.ok and result.stdout.strip() == "45"


def test_network_is_unreachable():
    result = run_python("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
                        QUICK)
    assert not result.ok and "Network is unreachable" in result.stderr


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/passwd", str(Path.home()),
                                  str(Path(__file__).resolve().parents[2])])
def test_the_machines_files_are_not_there(path):
    result = run_python(f"import os\nprint(os.listdir({path!r}) if os.path.isdir({path!r}) "
                        f"else open({path!r}).read())", QUICK)
    assert not result.ok and "No such file or directory" in result.stderr


def test_writes_outside_the_work_folder_fail_and_inside_succeed(tmp_path):
    outside = run_python("open('/usr/escape.txt', 'w').write('x')", QUICK)
    assert "Read-only file system" in outside.stderr
    inside = run_python("open('note.txt', 'w').write('kept here')\nprint(open('note.txt').read())")
    assert inside.ok and inside.stdout.strip() == "kept here"


def test_a_file_bigger_than_the_limit_cannot_be_written():
    result = run_python("open('big', 'wb').write(b'x' * (2 << 20))",
                        Limits(file_bytes=1 << 20, wall_seconds=3))
    assert not result.ok


def test_a_fork_bomb_stops_at_the_process_limit():
    result = run_python("import os\nwhile True:\n    os.fork()", QUICK)
    assert not result.ok
    assert "Resource temporarily unavailable" in result.stderr or result.timed_out
    assert _running(_sandbox_uid()) == [] or os.getuid() != 0


def test_allocating_8_gb_fails_with_memory_error():
    result = run_python("block = bytearray(8 << 30)", QUICK)
    assert not result.ok and "MemoryError" in result.stderr


def test_an_infinite_loop_is_stopped_at_the_wall_clock():
    result = run_python("while True:\n    pass", Limits(wall_seconds=1.0, cpu_seconds=30))
    assert result.timed_out and "time limit" in result.describe_failure()
    assert result.seconds < 3


def test_a_gigabyte_of_output_is_capped_and_stopped():
    result = run_python("import sys\nfor _ in range(16384):\n    sys.stdout.write('x' * 65536)",
                        Limits(output_bytes=1 << 20, wall_seconds=10))
    assert result.output_capped and len(result.stdout) <= 1 << 20
    assert "output limit" in result.describe_failure()


def test_the_parent_cannot_be_signalled():
    result = run_python(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)", QUICK)
    assert "No such process" in result.stderr


def test_ctypes_ptrace_cannot_reach_the_parent():
    code = (f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"print(libc.ptrace(16, {os.getpid()}, 0, 0), ctypes.get_errno())")
    result = run_python(code, QUICK)
    assert result.stdout.split() == ["-1", "3"]  # PTRACE_ATTACH fails with ESRCH


def test_ctypes_mprotect_acts_only_on_the_sandboxed_process():
    code = ("import ctypes, mmap\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "page = mmap.mmap(-1, 4096)\n"
            "address = ctypes.addressof(ctypes.c_char.from_buffer(page))\n"
            "print(libc.mprotect(ctypes.c_void_p(address), 4096, 7))")
    result = run_python(code, QUICK)
    assert result.stdout.strip() == "0"  # allowed: it changes only its own memory


@pytest.mark.skipif(os.getuid() != 0, reason="the process count is per user without root")
def test_no_process_outlives_the_timeout():
    code = ("import subprocess, time\n"
            "subprocess.Popen(['sleep', '100'], start_new_session=True)\ntime.sleep(100)")
    result = run_python(code, Limits(wall_seconds=1.0))
    assert result.timed_out
    assert _running(sandbox.NOBODY) == []


def test_missing_bubblewrap_is_refused_with_a_sentence(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ParrotError, match="apt-get install bubblewrap"):
        run_python("print(1)")
