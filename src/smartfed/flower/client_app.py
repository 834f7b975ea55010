"""The Flower ClientApp: a SuperNode's device. It trains what the method trains with the same `client_update` as the
simulator, on the partition its SuperNode was given (`--node-config "partition-id=P num-partitions=N"`).

`--node-config "... k-avg=1.0"` announces a weak device: it can afford k_avg experts per matrix on
average (EEQA device budgets); the server scales its quotas down.

`--node-config "... fault=nan|crash|missing-key"` makes the node misbehave on purpose, to test the
server's fault handling across real processes."""

import json

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from smartfed.fed.client import client_seed, client_update
from smartfed.fed.wire import decode_state, encode_state
from smartfed.flower.task import client_data, config_from, model_side

app = ClientApp()


def _partition(context: Context, num_clients: int) -> int:
    partition, declared = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    if declared != num_clients or not 0 <= partition < num_clients:
        raise ValueError(f"node config: expected partition-id in [0, {num_clients}) and num-partitions={num_clients} "
                         f"(the run's num_clients), found partition-id={partition}, num-partitions={declared}")
    return partition


@app.query()
def query(msg: Message, context: Context) -> Message:
    config = config_from(context.run_config)
    node = ConfigRecord({"partition-id": _partition(context, config.federation.num_clients)})
    if "k-avg" in context.node_config:
        node["k-avg"] = float(context.node_config["k-avg"])
    return Message(RecordDict({"node": node}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = config_from(context.run_config)
    partition = _partition(context, config.federation.num_clients)
    side = model_side(config)
    request = msg.content["round"]
    round_ = int(request["round"])
    result = client_update(config, side.model, side.tokenizer, decode_state(request["payload"]), json.loads(request["quotas"]),
                           client_data(config, partition), client_seed(config, round_, partition))
    state = result.state
    fault = context.node_config.get("fault", "")
    if fault == "crash":
        raise RuntimeError("injected fault: crash")
    if fault == "nan":
        next(iter(state.values()))[0] = float("nan")
    if fault == "missing-key":
        state.pop(next(iter(state)))
    update = ConfigRecord({"payload": encode_state(state), "partition-id": partition})
    if result.importance is not None:
        update["importance"] = json.dumps(result.importance)
    content = RecordDict({
        "update": update,
        "metrics": MetricRecord({"num-examples": result.num_examples, "train-loss": result.metrics["train_loss"],
                                 "cpu-s": result.metrics["cpu_s"], "tokens": result.metrics["tokens"]}),
    })
    return Message(content, reply_to=msg)
