"""The Flower ServerApp: the same server loop as the simulator (`run_federation`), with an exchange
that sends each sampled client's state to its SuperNode as a Message and waits for replies.

The router payload is carried as the same safetensors bytes the simulator counts."""

import json
import math
import time

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from smartfed.fed.exchange import ClientReply, ClientRequest
from smartfed.fed.loop import run_federation
from smartfed.fed.workspace import evaluation_set
from smartfed.flower.task import config_from, model_side
from smartfed.methods import get_method

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
        node, source = reply.content["node"], reply.metadata.src_node_id
        partition = int(node["partition-id"])
        if partition in mapping:
            raise ValueError(f"SuperNodes {mapping[partition]} and {source} both claim partition {partition}: "
                             "each partition must be held by exactly one node (check their --node-config)")
        mapping[partition] = source
        if "k-avg" in node:
            budgets[partition] = float(node["k-avg"])
    if sorted(mapping) != list(range(num_clients)):
        raise ValueError(f"expected SuperNodes holding partitions 0..{num_clients - 1}, found {sorted(mapping)}")
    return mapping, budgets


def bounded_budgets(announced: dict[int, float], top_k: int) -> dict[int, float]:
    """A node may announce less than top_k experts per matrix, never more (clamped); a budget that is not
    a positive finite number is refused, naming the partition."""
    out = {}
    for partition, k_avg in announced.items():
        if not math.isfinite(k_avg) or k_avg <= 0:
            raise ValueError(f"SuperNode of partition {partition}: k-avg expected a number in (0, {top_k}], found {k_avg}")
        out[partition] = min(k_avg, float(top_k))
    return out


def _client_reply(client: int, reply: Message | None, timeout_s: float) -> ClientReply:
    """A SuperNode's reply as the server loop's ClientReply; anything malformed is a dropped client."""
    if reply is None:
        why = f"no reply before client_timeout_s={timeout_s}" if timeout_s else "no reply (the SuperNode went away)"
        return ClientReply(client, None, status=f"dropped: {why}")
    if reply.has_error():
        return ClientReply(client, None, status=f"dropped: {reply.error.reason}")
    try:
        metrics, update = reply.content["metrics"], reply.content["update"]
        importance = json.loads(update["importance"]) if "importance" in update else None
        return ClientReply(client, update["payload"], metrics["num-examples"],
                           {"train_loss": float(metrics["train-loss"]), "cpu_s": float(metrics["cpu-s"]), "tokens": int(metrics["tokens"])},
                           importance=importance)
    except (KeyError, TypeError, ValueError) as err:
        return ClientReply(client, None, status=f"dropped: malformed reply ({type(err).__name__}: {err})")


def flower_exchange(grid: Grid, node_of: dict[int, int], timeout_s: float):
    def exchange(round_: int, requests: dict[int, ClientRequest]) -> list[ClientReply]:
        messages = [
            Message(RecordDict({"round": ConfigRecord({"round": round_, "payload": r.payload, "quotas": json.dumps(r.quotas)})}),
                    dst_node_id=node_of[c], message_type=MessageType.TRAIN)
            for c, r in requests.items()
        ]
        replies = {r.metadata.src_node_id: r for r in grid.send_and_receive(messages, timeout=timeout_s or None)}
        return [_client_reply(c, replies.get(node_of[c]), timeout_s) for c in requests]
    return exchange


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = config_from(context.run_config)
    method = get_method(config.run.method)
    if not method.federated:
        raise ValueError(f"method '{config.run.method}' does not federate: run it with `smartfed run` (nothing to send)")
    if method.folds_into_base:
        raise ValueError(f"method '{config.run.method}' runs in-process only for now: its SuperNodes would have to fold every "
                         "round's stacked LoRA into their own base weights, which the ClientApp does not do yet")
    side = model_side(config)  # the server loads no client data
    node_of, announced = discover_partitions(grid, config.federation.num_clients)
    if announced:  # budgets the devices announced win over the run config's, bounded by the server
        config = config.with_values({"eeqa.device_budgets": config.eeqa.device_budgets | bounded_budgets(announced, config.router.top_k)})
    run_federation(config, side, evaluation_set(config), flower_exchange(grid, node_of, config.federation.client_timeout_s))
