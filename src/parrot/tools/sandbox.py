"""Run untrusted Python (a model's program) where it cannot harm the machine.

What it protects against, and how:
- **Reading the machine's files** (`/etc/shadow`, the user's home, the project): the code runs
  in `bubblewrap` with a new, empty root. Only the interpreter's install, `/usr` and a fresh
  `/proc` and `/dev` are mounted, read-only; `/etc`, `/home`, `/root` and the working tree are
  not there at all.
- **Writing anywhere but its own scratch folder**: the only writable mounts are a private
  temporary work directory (created for this run, deleted after it) and a small `/tmp` tmpfs.
  RLIMIT_FSIZE caps the size of any file it writes.
- **The network**: the network namespace is unshared, so there is no interface but a down
  loopback.
- **Other processes**: PID, IPC, UTS and user namespaces are unshared, so it sees only its own
  processes and cannot signal or `ptrace` the parent; when the sandbox runs as root it first
  drops to `nobody`. bwrap sets no-new-privileges, so set-uid binaries gain nothing.
- **Exhausting the machine**: rlimits on CPU seconds, address space (so an 8 GB allocation
  fails with MemoryError), processes (a fork bomb stops at the limit), file size and open
  files; a wall-clock timeout kills the whole process group (and with it the PID namespace, so
  no process outlives the run); stdout and stderr are capped, and a run that prints past the
  cap is killed.

What it does not protect against:
- kernel exploits: the code shares the host kernel (no seccomp filter is installed, so every
  system call is available to the sandboxed process, acting on itself);
- reading what is mounted: the interpreter's own files and `/usr` are visible (read-only);
- side channels such as timing, and CPU contention within the limits;
- a process limit is per user: without root the count includes the user's other processes, so
  the limit is set to what the user already runs plus `Limits.processes`.

Where `bwrap` is missing, running code is refused with a sentence saying how to install it;
there is never a silent, unsandboxed fallback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parrot.errors import ParrotError

NOBODY = 65534
INSTALL_HINT = ("install bubblewrap to run code in the sandbox "
                "(Debian/Ubuntu: `sudo apt-get install bubblewrap`; `make setup-sandbox` does it)")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_bytes: int = 1 << 30
    processes: int = 32
    file_bytes: int = 16 << 20
    open_files: int = 64
    output_bytes: int = 64 << 10

    def describe(self) -> str:
        return (f"cpu {self.cpu_seconds} s, wall {self.wall_seconds:g} s, "
                f"memory {self.memory_bytes >> 20} MiB, processes {self.processes}, "
                f"file size {self.file_bytes >> 20} MiB, open files {self.open_files}, "
                f"output {self.output_bytes >> 10} KiB, no network")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What happened: exit status, captured output, and why it stopped if it was stopped."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    output_capped: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_capped

    def describe_failure(self) -> str:
        """One line for a model (PAL retries) or a person: why the run did not succeed."""
        if self.timed_out:
            return "the program ran past its time limit and was stopped"
        if self.output_capped:
            return "the program printed more than the output limit and was stopped"
        if self.returncode < 0:
            return f"the program was killed by signal {signal.Signals(-self.returncode).name}"
        last = self.stderr.strip().splitlines()
        return last[-1] if last else f"the program exited with status {self.returncode}"


def bwrap_path() -> str:
    """The bubblewrap binary, or a ParrotError that says how to install it."""
    found = shutil.which("bwrap")
    if found is None:
        raise ParrotError(f"bubblewrap (`bwrap`) is not installed: {INSTALL_HINT}")
    return found


def sandbox_python() -> tuple[str, list[str]]:
    """The interpreter to run inside, and the folders it needs mounted (read-only).

    The system's `/usr/bin/python3` needs only `/usr`; otherwise the running interpreter's
    install prefix is mounted too. Only the standard library is importable either way.
    """
    if Path("/usr/bin/python3").exists():
        return "/usr/bin/python3", []
    base = Path(sys.base_prefix).resolve()
    return str(base / "bin" / "python3"), [str(base)]


def bwrap_command(bwrap: str, python: str, extra_ro: list[str], work: Path,
                  script: str, info_fd: int) -> list[str]:
    """The bubblewrap command line: an empty root with /usr read-only and one work folder.

    bwrap writes the host PID of the namespace's first process to `info_fd`; when that process
    is gone, the kernel has killed everything else in the namespace.
    """
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
               "--info-fd", str(info_fd), "--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin", "sbin"):
        if Path(f"/{name}").is_symlink():
            command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif Path(f"/{name}").is_dir():
            command += ["--ro-bind", f"/{name}", f"/{name}"]
    for folder in extra_ro:
        command += ["--ro-bind", folder, folder]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--bind", str(work), "/work", "--chdir", "/work",
                "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
                "--setenv", "HOME", "/work", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
                python, "-I", script]  # -I: ignore PYTHON* variables and the user's site
    return command


def _user_processes(uid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                continue
    return count


def _limit_child(limits: Limits, drop_to_nobody: bool):
    """A preexec function: drop root (if we are root), then set the rlimits."""
    uid = NOBODY if drop_to_nobody else os.getuid()
    processes = limits.processes + _user_processes(uid)

    def apply() -> None:
        if drop_to_nobody:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        for which, value in ((resource.RLIMIT_CPU, limits.cpu_seconds),
                             (resource.RLIMIT_AS, limits.memory_bytes),
                             (resource.RLIMIT_NPROC, processes),
                             (resource.RLIMIT_FSIZE, limits.file_bytes),
                             (resource.RLIMIT_NOFILE, limits.open_files),
                             (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))
    return apply


def _collect(process: subprocess.Popen, limits: Limits) -> tuple[bytes, bytes, bool, bool]:
    """Read both pipes until exit, the deadline or the output cap; returns (out, err, timed_out,
    capped)."""
    deadline = time.monotonic() + limits.wall_seconds
    chunks = {process.stdout: bytearray(), process.stderr: bytearray()}
    selector = selectors.DefaultSelector()
    for pipe in chunks:
        selector.register(pipe, selectors.EVENT_READ)
    timed_out = capped = False
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(timeout=remaining):
            data = os.read(key.fd, 65536)
            if not data:
                selector.unregister(key.fileobj)
                continue
            chunks[key.fileobj] += data
        if sum(len(c) for c in chunks.values()) > limits.output_bytes:
            capped = True
            break
    selector.close()
    return bytes(chunks[process.stdout]), bytes(chunks[process.stderr]), timed_out, capped


def _namespace_pid(info: int) -> int | None:
    """The host PID of the sandbox's PID-namespace init, from bwrap's --info-fd JSON."""
    with os.fdopen(info, "rb") as pipe:
        text = pipe.read()
    try:
        return int(json.loads(text)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by its new parent) is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(process: subprocess.Popen, info: int, wait_seconds: float = 5.0) -> None:
    """Kill bwrap's process group and the namespace init, then wait until the init is gone."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    init = _namespace_pid(info)
    if init is None:
        return
    deadline = time.monotonic() + wait_seconds
    while _alive(init) and time.monotonic() < deadline:
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.01)


def run_python(code: str, limits: Limits = Limits()) -> RunResult:
    """Run `code` as a Python program in the sandbox and return what it printed.

    The program runs in its own empty work folder (`/work` inside), which is deleted after.
    Raises ParrotError only when bubblewrap is missing; everything the program does wrong is in
    the result.
    """
    bwrap = bwrap_path()
    python, extra_ro = sandbox_python()
    drop = os.getuid() == 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parrot-sandbox-") as folder:
        work = Path(folder)
        (work / "main.py").write_text(code, encoding="utf-8")
        if drop:
            os.chown(work, NOBODY, NOBODY)
        info_read, info_write = os.pipe()
        process = subprocess.Popen(
            bwrap_command(bwrap, python, extra_ro, work, "/work/main.py", info_write),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_limit_child(limits, drop),
            pass_fds=(info_write,))
        os.close(info_write)
        try:
            out, err, timed_out, capped = _collect(process, limits)
        finally:
            _stop(process, info_read)
            process.stdout.close()
            process.stderr.close()
        if drop:  # the sandbox's files belong to nobody; take them back to delete them
            for path in [work, *work.rglob("*")]:
                os.lchown(path, 0, 0)
    cap = limits.output_bytes
    return RunResult(returncode=process.returncode, stdout=out[:cap].decode("utf-8", "replace"),
                     stderr=err[:cap].decode("utf-8", "replace"), timed_out=timed_out,
                     output_capped=capped, seconds=time.monotonic() - start)
