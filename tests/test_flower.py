"""Real Flower deployment on 127.0.0.1: a SuperLink and SuperNodes as separate processes, `flwr run`.

Two rounds through Flower must give the same final router as the in-process engine with the same
config, seed and data; faulty SuperNodes are dropped or rejected and the run goes on."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_adapter
from smartfed import load_base_model
from smartfed.config import load_config
from smartfed.fed.simulation import run_simulation

pytestmark = pytest.mark.slow  # real processes / the real model

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def deployment_env(tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("flower")
    env = os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the SuperLink starts flower-superexec by name
        "FLWR_HOME": str(root / "flwr-home"), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "SMARTFED_CACHE": str(cache),
    }
    return root, env


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Until the SuperLink accepts connections (start-up takes seconds, longer on a busy machine)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"flower-superlink exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"flower-superlink not listening on {port} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def listens_on_every_interface(port: int) -> bool:
    """A listening TCP socket bound to 0.0.0.0 (or ::) on `port`, from /proc/net/tcp{,6}."""
    for table, any_address in (("/proc/net/tcp", "00000000"), ("/proc/net/tcp6", "0" * 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port and address == any_address:
                return True
    return False


def start_federation(root: Path, env: dict, node_configs: list[str]) -> tuple[list[subprocess.Popen], str]:
    """A SuperLink and one SuperNode per node config; returns (processes, SuperLink connection name)."""
    port = free_port()
    log = root / f"superlink-{port}.log"
    # --host 0.0.0.0, as the README's real-machines command: remote devices must be able to connect
    procs = [subprocess.Popen([BIN / "flower-superlink", "--insecure", "--host", "0.0.0.0", "--port", str(port),
                               "--database", str(root / f"state-{port}.db")],
                              env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=open(log, "w"))]
    wait_for_port(port, procs[0], log)
    assert listens_on_every_interface(port), f"flower-superlink listens only on loopback on {port}"
    for n, node_config in enumerate(node_configs):
        procs.append(subprocess.Popen(
            [BIN / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(free_port()), "--node-config", node_config],
            env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=open(root / f"supernode-{port}-{n}.log", "w")))
    home = Path(env["FLWR_HOME"])
    home.mkdir(exist_ok=True)
    name = f"loop{port}"
    with open(home / "config.toml", "a") as f:
        f.write(f'\n[superlink.{name}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')
    return procs, name


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def flwr_run(env: dict, connection: str, config_file: Path, run_dir: Path, timeout: float = 400) -> None:
    result = subprocess.run([BIN / "flwr", "run", str(REPO), connection, "--run-config", f"config-file='{config_file}'", "--stream"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if not (run_dir / "summary.json").is_file():
        raise AssertionError(f"flwr run left no summary in {run_dir}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def tiny_run(tiny_model_folder, deployment_env):
    root, _ = deployment_env
    model, _ = load_base_model(tiny_model_folder)
    pool = [str(make_adapter(model, root / f"m{n}", n, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])) for n in range(2)]

    def write(name: str, extra: dict | None = None) -> Path:
        values = {"model.name": tiny_model_folder, "pool.adapters": pool, "run.out_dir": str(root / "runs"), "run.name": name,
                  "data.composition": "zh+code", "data.partition": "natural:source", "federation.num_clients": 2,
                  "federation.clients_per_round": 2, "federation.min_clients": 2, "federation.rounds": 2, "training.local_steps": 2,
                  "training.batch_size": 2, "training.max_length": 96, "eval.examples": 8, "training.lr": 0.05} | (extra or {})
        path = root / f"{name}.toml"
        path.write_text(load_config(base=values).to_toml())
        return path

    return write


def test_flower_deployment_equals_the_in_process_run(tiny_run, deployment_env):
    """SuperNode 1 announces a weak device (k_avg = 1); the in-process run is told the same budget."""
    root, env = deployment_env
    flower_config = tiny_run("flower")
    procs, connection = start_federation(root, env, ["partition-id=0 num-partitions=2", "partition-id=1 num-partitions=2 k-avg=1.0"])
    try:
        flwr_run(env, connection, flower_config, root / "runs" / "flower")
    finally:
        stop(procs)
    assert load_config(str(root / "runs" / "flower" / "config.toml")).eeqa.device_budgets == {1: 1.0}
    local = load_config(str(tiny_run("local", {"eeqa.device_budgets": {1: 1.0}})))
    run_simulation(local, log=lambda *_: None)

    a = load_file(root / "runs" / "flower" / "checkpoints" / "round-0002.safetensors")
    b = load_file(root / "runs" / "local" / "checkpoints" / "round-0002.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    flower_metrics = [json.loads(l) for l in (root / "runs" / "flower" / "metrics.jsonl").read_text().splitlines()]
    local_metrics = [json.loads(l) for l in (root / "runs" / "local" / "metrics.jsonl").read_text().splitlines()]
    for f, l in zip(flower_metrics, local_metrics):
        assert (f["bytes_up"], f["bytes_down"], f["heldout_loss"]) == (l["bytes_up"], l["bytes_down"], l["heldout_loss"])
    num_matrices = len(flower_metrics[0]["quotas"])
    for m in flower_metrics[1:]:
        assert {c["client"]: (c["quota_total"], c.get("budget_k_avg")) for c in m["clients"]} == {0: (2 * num_matrices, None), 1: (num_matrices, 1.0)}


def test_faulty_supernodes_are_dropped_and_the_run_goes_on(tiny_run, deployment_env):
    root, env = deployment_env
    config = tiny_run("faults", {"federation.num_clients": 3, "federation.clients_per_round": 3, "federation.min_clients": 1,
                                 "data.partition": "iid"})
    nodes = ["partition-id=0 num-partitions=3", "partition-id=1 num-partitions=3 fault='nan'", "partition-id=2 num-partitions=3 fault='crash'"]
    procs, connection = start_federation(root, env, nodes)
    try:
        flwr_run(env, connection, config, root / "runs" / "faults")
    finally:
        stop(procs)
    metrics = [json.loads(l) for l in (root / "runs" / "faults" / "metrics.jsonl").read_text().splitlines()][1:]
    assert [m["accepted"] for m in metrics] == [1, 1]
    for m in metrics:
        status = {c["client"]: c["status"] for c in m["clients"]}
        assert status[0] == "ok" and status[1].startswith("rejected: key") and "NaN" in status[1]
        assert status[2].startswith("dropped:")
