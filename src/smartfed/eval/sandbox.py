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
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")


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
    prefix = (unshare, "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--net")
    return prefix if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0 else ()


def isolation() -> str:
    return "pid+net namespaces" if namespace_prefix() else "process limits and Landlock only (no namespaces)"


def run_program(program: str, timeout: float = 10.0, memory_mb: int = 1024) -> SandboxResult:
    """Run `program` (Python source) in the sandbox; it passes if it exits with status 0."""
    with tempfile.TemporaryDirectory(prefix="smartfed-sandbox-") as workdir:
        path = Path(workdir) / "program.py"
        path.write_text(program, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HOME": workdir, "TMPDIR": workdir}
        command = [*namespace_prefix(), sys.executable, "-I", str(CHILD), str(path), str(memory_mb), str(int(timeout) + 1)]
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            status = "timeout"
        return SandboxResult(status, proc.returncode, out.decode("utf-8", "replace")[-2000:])
