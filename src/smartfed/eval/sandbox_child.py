"""Runs inside the sandbox process: lock itself down, then execute one untrusted program.

Self-contained (standard library only): it is started as `python -I sandbox_child.py PROGRAM
MEMORY_MB CPU_SECONDS` with the working directory set to a fresh temporary folder: limits first,
then Landlock (filesystem writes only below the working directory, reads only there and in what
Python needs, no TCP), then a seccomp filter that refuses to create processes (fork, vfork, clone
without CLONE_THREAD, clone3; threads still work), Unix-domain sockets and signals to other
processes, then the program. The filter is what stops a fork bomb: RLIMIT_NPROC does not bind root.
"""

import ctypes
import errno
import os
import platform
import resource
import struct
import sys

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same numbers on x86_64 and arm64
_PR_SET_NO_NEW_PRIVS = 38
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR, _REMOVE_DIR, _REMOVE_FILE = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5
_READS = _EXECUTE | _READ_FILE | _READ_DIR
_MAKE_ALL = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2


def _readable() -> list[str]:
    """What Python and its standard library need to go on running: the interpreter's prefixes, its import
    path, the shared libraries, the time zones, /dev/urandom and this process's own /proc entry.
    Nothing else is readable: not the evaluator's data, not /etc, not other processes."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo", "/dev/urandom",
             f"/proc/{os.readlink('/proc/self')}"}  # its own entry as the mounted /proc numbers it (the host's, in a pid namespace)
    paths |= {p for p in sys.path if p and os.path.isabs(p)}
    return sorted(p for p in paths if os.path.exists(p))


def _landlock(writable: str) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return "landlock unavailable"
    writes = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_ALL | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    handled = writes | _READS
    attr = struct.pack("QQ", handled, _NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else struct.pack("Q", handled)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"landlock ruleset failed: {os.strerror(ctypes.get_errno())}"
    rules = [(writable, writes | _READS), ("/dev/null", _WRITE_FILE | _READ_FILE | (_TRUNCATE if abi >= 3 else 0))]
    rules += [(path, _READS) for path in _readable()]
    for path, allowed in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not os.path.isdir(path):
            allowed &= _WRITE_FILE | _READ_FILE | _EXECUTE | (_TRUNCATE if abi >= 3 else 0)  # file rules take file rights only
        rule = ctypes.create_string_buffer(struct.pack("=Qi", allowed, fd), 12)  # packed struct
        libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), rule, ctypes.c_uint32(0))
        os.close(fd)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        return f"landlock restrict failed: {os.strerror(ctypes.get_errno())}"
    os.close(ruleset)
    return f"landlock abi {abi}"


# (audit arch, {syscall: number}) per machine; clone3 takes its flags in a struct seccomp cannot read.
_SYSCALLS = {
    "x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "socket": 41, "kill": 62, "tkill": 200, "tgkill": 234,
                            "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424, "io_uring_setup": 425,
                            "pidfd_open": 434}),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435, "socket": 198, "kill": 129, "tkill": 130, "tgkill": 131,
                             "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "pidfd_send_signal": 424, "io_uring_setup": 425,
                             "pidfd_open": 434}),
}
# Refused outright: other ways to signal a process (pidfds, queued signals) and io_uring (sockets without socket()).
_ALWAYS_DENIED = ("rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal", "pidfd_open", "io_uring_setup")
_X32 = 0x40000000  # x86_64's x32 ABI bit: a second syscall table
_AF_UNIX, _SOCK_DGRAM = 1, 2
_CLONE_THREAD = 0x00010000


def _no_new_processes() -> str:
    if platform.machine() not in _SYSCALLS:
        return "seccomp: unknown machine, processes not blocked"
    arch, nr = _SYSCALLS[platform.machine()]
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, deny, nosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, deny), (ld, 0, 0, 0)]  # another ABI (i386 int 0x80): refused
    prog += [(0x35, 0, 1, _X32), (ret, 0, 0, deny)]  # jge: x32 syscall numbers refused
    for name in _ALWAYS_DENIED:
        prog += [(jeq, 0, 1, nr[name]), (ret, 0, 0, deny)]
    for name in ("fork", "vfork"):
        if name in nr:
            prog += [(jeq, 0, 1, nr[name]), (ret, 0, 0, deny)]
    prog += [(jeq, 0, 1, nr["clone3"]), (ret, 0, 0, nosys)]  # glibc then falls back to clone
    # socket(AF_UNIX, ...) and datagram sockets: no Unix-domain sockets of the evaluator or the host, no UDP
    # (Landlock only governs TCP, and without a network namespace UDP would reach the network)
    prog += [(jeq, 0, 7, nr["socket"]), (ld, 0, 0, 16), (jeq, 4, 0, _AF_UNIX), (ld, 0, 0, 24), (0x54, 0, 0, 0xF),
             (jeq, 1, 0, _SOCK_DGRAM), (ret, 0, 0, allow), (ret, 0, 0, deny)]
    # kill / tkill / tgkill: signals only to itself (pid 0 is its own process group, the evaluator is in another session)
    for name in ("kill", "tkill", "tgkill"):
        prog += [(jeq, 0, 5, nr[name]), (ld, 0, 0, 16), (jeq, 2, 0, os.getpid()), (jeq, 1, 0, 0), (ret, 0, 0, deny), (ret, 0, 0, allow)]
    prog += [(jeq, 0, 3, nr["clone"]), (ld, 0, 0, 16), (jset, 1, 0, _CLONE_THREAD), (ret, 0, 0, deny)]
    prog += [(ret, 0, 0, allow)]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
    fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
        return f"seccomp failed: {os.strerror(ctypes.get_errno())}"
    return "seccomp: no new processes, no Unix or datagram sockets, signals only to itself"


def main() -> None:
    program, memory_mb, cpu_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    workdir = os.getcwd()
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
    status = f"{_landlock(workdir)}; {_no_new_processes()}"
    if os.environ.get("SMARTFED_SANDBOX_DEBUG"):
        print(status, file=sys.stderr)
    with open(program, encoding="utf-8") as f:
        source = f.read()
    os.unlink(program)  # the program cannot read its own source (and the pass marker in it) back from disk
    sys.argv = [program]
    exec(compile(source, program, "exec"), {"__name__": "__main__", "__file__": program})


if __name__ == "__main__":
    main()
