"""The Flower ServerApp: the same server loop as the simulator (`run_federation`), with an exchange
that sends each sampled client's router state to its SuperNode as a Message and waits for replies.

The router payload is carried as the same safetensors bytes the simulator counts."""

import json
import time
from dataclasses import replace

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from smartfed.fed.federation import ClientReply, run_federation
from smartfed.flower.task import config_from, workspace

app = ServerApp()


def discover_partitions(grid: Grid, num_clients: int, wait_s: float = 300.0) -> tuple[dict[int, int], dict[int, float]]:
    """(partition id -> node id, partition id -> announced k_avg), asking every connected SuperNode
    which partition it holds and whether it is a weak device with a smaller expert budget."""
    deadline = time.time() + wait_s
    while len(list(grid.get_node_ids())) < num_clients:
        if time.time() > deadline:
            raise TimeoutError(f"expected {num_clients} SuperNodes, found {len(list(grid.get_node_ids()))} after {wait_s:.0f} s")
        time.sleep(1.0)
    queries = [Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY) for node in grid.get_node_ids()]
    mapping, budgets = {}, {}
    for reply in grid.send_and_receive(queries, timeout=wait_s):
        if reply.has_error():
            raise RuntimeError(f"SuperNode {reply.metadata.src_node_id}: {reply.error.reason}")
        node = reply.content["node"]
        mapping[int(node["partition-id"])] = reply.metadata.src_node_id
        if "k-avg" in node:
            budgets[int(node["partition-id"])] = float(node["k-avg"])
    if sorted(mapping) != list(range(num_clients)):
        raise ValueError(f"expected SuperNodes holding partitions 0..{num_clients - 1}, found {sorted(mapping)}")
    return mapping, budgets


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = config_from(context.run_config)
    if config.method == "local":
        raise ValueError("method 'local' is not federated: run it with `smartfed run` (nothing to send)")
    ws = workspace(config)
    node_of, announced = discover_partitions(grid, config.num_clients)
    if announced:  # budgets the devices announced win over the run config's; validated like any config value
        budgets = config.device_budgets | announced
        config = replace(config, weak_clients=",".join(f"{c}:{k:g}" for c, k in sorted(budgets.items())))

    def exchange(round_: int, payload: bytes, quotas: dict[int, dict[str, int]], clients: list[int]) -> list[ClientReply]:
        messages = [
            Message(RecordDict({"round": ConfigRecord({"round": round_, "payload": payload, "quotas": json.dumps(quotas[c])})}),
                    dst_node_id=node_of[c], message_type=MessageType.TRAIN)
            for c in clients
        ]
        replies = {r.metadata.src_node_id: r for r in grid.send_and_receive(messages, timeout=config.client_timeout_s or None)}
        out = []
        for client in clients:
            reply = replies.get(node_of[client])
            if reply is None:
                out.append(ClientReply(client, None, status="dropped: no reply before client_timeout_s"))
            elif reply.has_error():
                out.append(ClientReply(client, None, status=f"dropped: {reply.error.reason}"))
            else:
                metrics, update = reply.content["metrics"], reply.content["update"]
                importance = json.loads(update["importance"]) if "importance" in update else None
                out.append(ClientReply(client, update["payload"], int(metrics["num-examples"]),
                                       {"train_loss": float(metrics["train-loss"]), "cpu_s": float(metrics["cpu-s"]),
                                        "tokens": int(metrics["tokens"])}, importance=importance))
        return out

    run_federation(config, ws, exchange)
