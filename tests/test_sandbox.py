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
