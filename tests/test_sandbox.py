"""Generated code is contained: the evaluator gets a result every time and carries on."""

import time

import pytest

from smartfed.eval.sandbox import isolation, run_program


def test_good_and_bad_programs():
    assert run_program("from typing import List\nimport math\nassert math.gcd(4, 6) == 2").passed
    failed = run_program("assert 1 + 1 == 3")
    assert failed.status == "failed" and "AssertionError" in failed.output


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_program("while True:\n    pass", timeout=2)
    assert result.status == "timeout" and time.monotonic() - start < 10


def test_fork_bomb_is_refused_and_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert run_program(bomb, timeout=2).status == "timeout"
    counted = run_program("import os\ntry:\n    os.fork()\nexcept OSError as e:\n    print('refused', e.errno)\n    raise SystemExit(3)")
    assert counted.returncode == 3 and "refused 1" in counted.output  # EPERM
    threads = run_program("import threading\nt = threading.Thread(target=print, args=('ok',))\nt.start()\nt.join()")
    assert threads.passed, threads.output


def test_huge_allocation_fails_inside_the_sandbox():
    result = run_program("x = bytearray(16 * 1024**3)", memory_mb=512)
    assert result.status == "failed" and "MemoryError" in result.output


def test_writes_outside_the_temp_dir_are_refused(tmp_path):
    target = tmp_path / "pwned.txt"
    result = run_program(f"open({str(target)!r}, 'w').write('x')")
    assert result.status == "failed" and "PermissionError" in result.output
    assert not target.exists()
    assert run_program("open('scratch.txt', 'w').write('x')\nassert open('scratch.txt').read() == 'x'").passed


def test_no_network():
    if isolation().startswith("process limits"):
        pytest.skip("no namespaces here; Landlock alone blocks TCP only on ABI >= 4")
    result = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=2)")
    assert result.status == "failed" and ("PermissionError" in result.output or "Network is unreachable" in result.output or "refused" in result.output)


def test_evaluator_carries_on_after_every_kind_of_bad_program():
    bad = ["while True: pass", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", "x = bytearray(16 * 1024**3)", "open('/etc/hosts_x', 'w')"]
    results = [run_program(p, timeout=2, memory_mb=512) for p in bad]
    assert all(not r.passed for r in results)
    assert run_program("print('still here')").output.strip() == "still here"


@pytest.mark.parametrize("escape", ["import sys; sys.exit(0)", "raise SystemExit", "raise SystemExit(0)", "import os; os._exit(0)",
                                    "import atexit, os; atexit.register(lambda: print('ok')); os._exit(0)", "exit()", "quit()",
                                    "print(open(__file__).read())"])
def test_a_program_that_exits_before_its_tests_does_not_pass(escape):
    """MBPP item 0 style: the model's code ends the process before the appended assertions run."""
    tests = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
    result = run_program(f"def add(a, b):\n    return a - b\n{escape}\n{tests}", require_marker=True)
    assert result.status == "failed", result
    assert run_program(f"def add(a, b):\n    return a + b\n{tests}", require_marker=True).passed


def test_output_floods_keep_a_bounded_tail():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_program("import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 1_000_000)\nprint('end')", timeout=20)
    assert result.passed and result.output.endswith("end\n") and len(result.output) <= 2000
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: 200 MB printed, < 100 MB kept


def test_a_program_may_not_fill_the_disk():
    program = "for i in range(16):\n    with open(f'f{i}', 'wb') as f:\n        f.write(b'x' * 15_000_000)\nimport time; time.sleep(5)"
    result = run_program(program, timeout=20)
    assert result.status == "failed" and "wrote more than 64 MB" in result.output


def test_the_program_runs_as_an_unprivileged_user_where_namespaces_exist():
    from smartfed.eval.sandbox import FULL_ISOLATION, namespace_prefix

    if not namespace_prefix():
        pytest.skip("no user namespaces here")
    result = run_program("import os\nprint(os.getuid(), os.getgid())")
    assert result.passed and result.output.split() == ["65534", "65534"] and isolation() == FULL_ISOLATION


def test_require_isolation_refuses_weaker_sandboxes(monkeypatch):
    from smartfed.eval import sandbox

    monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
    with pytest.raises(sandbox.SandboxError, match="expected isolation 'pid\\+net namespaces, unprivileged uid', found 'process limits"):
        sandbox.require_isolation()


def test_unix_domain_sockets_are_refused():
    result = run_program("import socket\nsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)")
    assert result.status == "failed" and "PermissionError" in result.output
    assert run_program("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM).close()").passed  # no connection anyway


@pytest.mark.parametrize("namespaces", [True, False])
def test_the_program_cannot_signal_the_evaluator(monkeypatch, namespaces):
    import os

    from smartfed.eval import sandbox

    if not namespaces:
        monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
    me = os.getpid()
    result = sandbox.run_program(f"import os, signal\nos.kill({me}, signal.SIGKILL)")
    # seccomp refuses it (PermissionError); inside a pid namespace the evaluator is not even visible (ProcessLookupError)
    assert result.status == "failed" and ("PermissionError" in result.output if not namespaces
                                          else "PermissionError" in result.output or "ProcessLookupError" in result.output)
    for trick in ("signal.pidfd_send_signal(os.pidfd_open(PID), signal.SIGKILL)", "os.kill(PID, signal.SIGTERM)"):
        result = sandbox.run_program("import os, signal\n" + trick.replace("PID", str(me if not namespaces else 12345)))
        assert result.status == "failed" and "PermissionError" in result.output, (trick, result.output)
    assert sandbox.run_program("import os, signal\nsignal.signal(signal.SIGUSR1, lambda *_: print('own'))\n"
                               "os.kill(os.getpid(), signal.SIGUSR1)").output.strip() == "own"  # itself: allowed


@pytest.mark.parametrize("path", ["/etc/passwd", "DATA"])
def test_reads_outside_what_python_needs_are_refused(path):
    from smartfed.data import data_dir

    target = str(next(data_dir().rglob("*.jsonl*"), data_dir())) if path == "DATA" else path
    result = run_program(f"print(open({target!r}, 'rb').read(10))")
    assert result.status == "failed" and "PermissionError" in result.output, result
    assert run_program("import json, hashlib, collections, re, math, itertools\nprint(json.dumps({'ok': 1}))").passed


@pytest.mark.parametrize("namespaces", [True, False])
def test_no_udp_and_no_other_processes_proc_entries(monkeypatch, namespaces):
    import os

    from smartfed.eval import sandbox

    if not namespaces:
        monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
    udp = sandbox.run_program("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")
    assert udp.status == "failed" and "PermissionError" in udp.output
    environ = sandbox.run_program(f"print(open('/proc/{os.getpid()}/environ', 'rb').read()[:20])")
    assert environ.status == "failed" and "Error" in environ.output
    assert sandbox.run_program("print(open('/proc/self/status').read()[:10])").passed  # its own entry (host-numbered in a pid namespace)
    assert sandbox.run_program("print(open('/proc/1/status').read()[:10])").status == 'failed'  # init, or in a namespace the host's
