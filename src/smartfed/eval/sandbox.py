"""Run untrusted generated code: a separate process in its own PID and network namespaces, with time,
memory, file-size and process-count limits, writes confined to a fresh temporary folder (Landlock),
and root dropped. Whatever the program does, the evaluator gets a result and carries on.

Layers, outermost first:
  - `unshare --user --map-root-user --pid --fork --kill-child --net`: no network at all, and every
    process the program starts dies with it;
  - a wall-clock timeout that kills the whole process group;
  - inside (sandbox_child.py): RLIMIT_AS / CPU / FSIZE / NPROC, Landlock (writes only below the
    temporary folder, no TCP) and a seccomp filter that refuses new processes (a fork bomb gets EPERM).
If namespaces are unavailable the run goes on with the inner layers and `isolation()` says so.
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from smartfed.errors import SmartFedError

CHILD = Path(__file__).with_name("sandbox_child.py")


class SandboxError(SmartFedError):
    """The sandbox cannot give the isolation that was asked for."""


@dataclass(frozen=True)
class SandboxResult:
    status: str  # "passed" | "failed" | "timeout"
    returncode: int | None
    output: str  # the last 2,000 characters of stdout + stderr

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@cache
def namespace_prefix() -> tuple[str, ...]:
    """The `unshare` command line that works on this machine, or () if none does."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    namespaces = ("--pid", "--fork", "--kill-child", "--net")
    for users in (("--user", "--map-user=65534", "--map-group=65534"), ("--user", "--map-root-user")):  # nobody first
        prefix = (unshare, *users, *namespaces)
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return ()


FULL_ISOLATION = "pid+net namespaces, unprivileged uid"


def isolation() -> str:
    """How a generated program is isolated here; printed at the start of every evaluation and kept with its results."""
    prefix = namespace_prefix()
    if not prefix:
        return "process limits, Landlock and seccomp only (no namespaces)"
    return FULL_ISOLATION if "--map-user=65534" in prefix else "pid+net namespaces, root inside"


def require_isolation() -> None:
    """Refuse to evaluate generated code with less than FULL_ISOLATION (`--require-isolation`)."""
    if isolation() != FULL_ISOLATION:
        raise SandboxError(f"code evaluation expected isolation '{FULL_ISOLATION}', found '{isolation()}' "
                           "(user namespaces unavailable?); run without --require-isolation to accept it")


OUTPUT_TAIL = 64 * 1024  # bytes of a program's output the evaluator keeps (the rest streams past)
DISK_MB = 64  # what a program may write in its folder, all files together


def _keep_tail(stream, tail: bytearray) -> None:
    """Read `stream` to its end, keeping only its last OUTPUT_TAIL bytes (a flood costs no memory)."""
    while chunk := stream.read1(65536):
        tail += chunk
        del tail[:-OUTPUT_TAIL]


def _disk_bytes(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _wait(proc: subprocess.Popen, workdir: str, timeout: float) -> str:
    """"timeout", "disk" (wrote more than DISK_MB) or "exited"; kills the process group unless it exited."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline or _disk_bytes(workdir) > DISK_MB * 1024 * 1024:
            why = "timeout" if time.monotonic() > deadline else "disk"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return why
        time.sleep(0.05)
    return "exited"


def run_program(program: str, timeout: float = 10.0, memory_mb: int = 1024, require_marker: bool = False) -> SandboxResult:
    """Run `program` (Python source) in the sandbox. It passes if it exits with status 0 and, with
    `require_marker`, if its last output line is a marker printed by a line appended after `program`
    (so `sys.exit(0)`, `os._exit(0)` or `raise SystemExit` before the tests do not pass)."""
    marker = f"smartfed-tests-passed-{secrets.token_hex(16)}"
    source = program + (f"\nprint({marker!r}, flush=True)\n" if require_marker else "")
    with tempfile.TemporaryDirectory(prefix="smartfed-sandbox-") as workdir:
        path = Path(workdir) / "program.py"
        path.write_text(source, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HOME": workdir, "TMPDIR": workdir}
        command = [*namespace_prefix(), sys.executable, "-I", str(CHILD), str(path), str(memory_mb), str(int(timeout) + 1)]
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        tail = bytearray()
        reader = threading.Thread(target=_keep_tail, args=(proc.stdout, tail), daemon=True)
        reader.start()
        ended = _wait(proc, workdir, timeout)
        reader.join(timeout=5)
        out = tail.decode("utf-8", "replace")
        if ended != "exited":
            status = "timeout" if ended == "timeout" else "failed"
            out += f"\n[smartfed sandbox: {'timed out' if ended == 'timeout' else f'wrote more than {DISK_MB} MB'}; killed]"
        else:
            lines = out.strip().splitlines()
            ok = proc.returncode == 0 and (not require_marker or (lines and lines[-1] == marker))
            status = "passed" if ok else "failed"
        return SandboxResult(status, proc.returncode, out[-2000:])
