"""The Flower ServerApp in this process, with a fake Grid whose SuperNodes run `client_update`: it must
never load client data, must equal the in-process engine bit for bit, and must drop malformed replies."""

import json
from types import SimpleNamespace

import pytest
import torch
from flwr.app import MessageType
from flwr.supercore.task_identity import TaskIdentity
from safetensors.torch import load_file

from conftest import make_config, tiny_pool
from smartfed.fed import workspace
from smartfed.fed.client import client_seed, client_update
from smartfed.fed.simulation import run_simulation
from smartfed.fed.wire import decode_state, encode_state
from smartfed.fed.workspace import client_partitions, load_model_side
from smartfed.flower import server_app


class FakeGrid:
    """SuperNodes 100 + p holding partition p; a TRAIN message is answered the way the ClientApp answers it."""

    def __init__(self, config, partitions, malformed: set[int] = frozenset()):
        self.config, self.partitions, self.malformed = config, partitions, malformed
        self.side = load_model_side(config)  # the devices' own copy of the model

    def get_node_ids(self):
        return [100 + p for p in range(len(self.partitions))]

    def send_and_receive(self, messages, timeout=None):
        return [self._answer(m) for m in messages]

    def _answer(self, msg):
        node = msg.metadata.dst_node_id
        partition = node - 100
        reply = lambda content: SimpleNamespace(metadata=SimpleNamespace(src_node_id=node), has_error=lambda: False, content=content)  # noqa: E731
        if msg.metadata.message_type == MessageType.QUERY:
            return reply({"node": {"partition-id": partition}})
        request = msg.content["round"]
        round_ = int(request["round"])
        result = client_update(self.config, self.side.model, self.side.tokenizer, decode_state(request["payload"]),
                               json.loads(request["quotas"]), self.partitions[partition], client_seed(self.config, round_, partition))
        update = {"payload": encode_state(result.state), "importance": json.dumps(result.importance)}
        metrics = {"num-examples": result.num_examples, "train-loss": result.metrics["train_loss"], "cpu-s": 0.1, "tokens": 7}
        if partition in self.malformed:
            update["importance"], metrics = "{not json", {}
        return reply({"update": update, "metrics": metrics})


@pytest.fixture
def server_setup(tiny_model_folder, tmp_path, monkeypatch):
    pool = tiny_pool(tiny_model_folder, tmp_path, 2)
    base = {"model.name": tiny_model_folder, "pool.adapters": pool, "run.out_dir": str(tmp_path / "runs"), "data.composition": "zh+math",
            "federation.num_clients": 3, "federation.clients_per_round": 3, "federation.min_clients": 2, "federation.rounds": 2,
            "training.local_steps": 2, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4, "training.lr": 0.05}
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    return base, tmp_path


def _serve(config, tmp_path, monkeypatch, malformed=frozenset()):
    partitions = client_partitions(config)  # the devices' data, made before the server starts
    grid = FakeGrid(config, partitions, malformed)

    def refuse(*_):
        raise AssertionError("the ServerApp loaded client data")

    monkeypatch.setattr(workspace, "client_partitions", refuse)
    monkeypatch.setattr(workspace, "partition", refuse)
    monkeypatch.setattr(workspace, "composition_splits", refuse)  # the training split: only heldout_split may be read
    path = tmp_path / f"{config.run.name}.toml"
    path.write_text(config.to_toml())
    server_app.main(grid, SimpleNamespace(run_config={"config-file": str(path)}))
    monkeypatch.undo()


def test_server_app_loads_no_client_data_and_equals_the_in_process_run(server_setup, monkeypatch):
    base, tmp_path = server_setup
    served = make_config(base, {"run.name": "served"})
    _serve(served, tmp_path, monkeypatch)
    here = make_config(base, {"run.name": "here"})
    run_simulation(here, log=lambda *_: None)
    a = load_file(served.run_dir / "checkpoints" / "round-0002.safetensors")
    b = load_file(here.run_dir / "checkpoints" / "round-0002.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_malformed_reply_drops_that_client_and_the_run_goes_on(server_setup, monkeypatch):
    base, tmp_path = server_setup
    config = make_config(base, {"run.name": "malformed"})
    _serve(config, tmp_path, monkeypatch, malformed={1})
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    for m in metrics:
        status = {c["client"]: c["status"] for c in m["clients"]}
        assert status[0] == status[2] == "ok" and status[1].startswith("dropped: malformed reply") and m["accepted"] == 2


def test_two_supernodes_claiming_one_partition_are_detected(server_setup):
    grid = SimpleNamespace(get_node_ids=lambda: [7, 8],
                           send_and_receive=lambda messages, timeout=None: [
                               SimpleNamespace(metadata=SimpleNamespace(src_node_id=m.metadata.dst_node_id), has_error=lambda: False,
                                               content={"node": {"partition-id": 0}}) for m in messages])
    with pytest.raises(ValueError, match="SuperNodes 7 and 8 both claim partition 0"):
        server_app.discover_partitions(grid, 2, wait_s=1)


def test_a_node_that_never_replied_is_reported_as_such():
    assert server_app._client_reply(3, None, 0.0).status == "dropped: no reply (the SuperNode went away)"
    assert server_app._client_reply(3, None, 30.0).status == "dropped: no reply before client_timeout_s=30.0"
