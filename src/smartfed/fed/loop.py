"""The server's loop, one implementation for every method and both engines.

Each round: the population says which clients train from which state with which quotas; `exchange`
carries the requests out and the replies back; each reply is checked and folded in; then evaluation
and the round's record and checkpoint. Engines differ only in `exchange` (fed/exchange.py).
"""

import json
import time

from smartfed.config import RunConfig
from smartfed.errors import RunFailed, SmartFedError
from smartfed.eval.generate import item_losses, mean_loss
from smartfed.experts import get_quotas, routed_layers, set_quotas
from smartfed.fed.exchange import ClientReply, ClientRequest, Exchange
from smartfed.fed.population import FoldingModel, OwnModels, SharedModel, make_population
from smartfed.fed.records import ClientRecord, RoundRecord
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.finish import finish_run
from smartfed.fed.server import UpdateRejected, check_importance, check_update
from smartfed.fed.wire import decode_state
from smartfed.fed.workspace import ModelSide
from smartfed.methods import Method, get_method
from smartfed.metrics.energy import round_energy

Population = SharedModel | FoldingModel | OwnModels


def run_federation(config: RunConfig, side: ModelSide, heldout: list, exchange: Exchange, resume: bool = False, log=print):
    """Run (or resume) the rounds of `config`; return the Summary written to the run folder."""
    run = RunFolder(config.run_dir)
    with run.writing():  # RunBusy if another process writes this folder
        return _run_rounds(config, side, heldout, exchange, run, resume, log)


def _run_rounds(config: RunConfig, side: ModelSide, heldout: list, exchange: Exchange, run: RunFolder, resume: bool, log):
    method = get_method(config.run.method)
    population, start = _start(config, method, side, heldout, run, resume, log)
    last = config.federation.rounds if method.trains_anything else 0  # a training-free method is its round 0
    for round_ in range(start + 1, last + 1):
        began = time.time()
        record = play_round(config, method, population, exchange, round_, log)
        previous = run.metrics()[-1]
        record.cumulative_bytes_up = previous.cumulative_bytes_up + record.bytes_up
        record.cumulative_bytes_down = previous.cumulative_bytes_down + record.bytes_down
        if round_ % config.eval.every == 0 or round_ == last:
            items = _scored_items(config, heldout, last=round_ == last)
            _set_heldout(record, population, evaluate(method, side, items, population.models()), config.eval.curve_examples)
        record.wall_s = round(time.time() - began, 2)
        run.append_metrics(record)  # before the checkpoint: see run_folder.py
        run.save_checkpoint(round_, *population.checkpoint())
        log(format_round(record))
    return finish_run(config, method, side, run, population.models(), last, own_models=isinstance(population, OwnModels))


def _start(config: RunConfig, method: Method, side: ModelSide, heldout: list, run: RunFolder, resume: bool,
           log=print) -> tuple[Population, int]:
    """A new population and round 0 (evaluated, checkpointed), or the one of the last checkpoint."""
    sizes = {name: layer.num_experts for name, layer in routed_layers(side.model).items()}
    population = make_population(config, method, side.model, method.state_dict(side.model), get_quotas(side.model), sizes)
    if resume:
        last = run.last_checkpoint(log)
        if last is None:
            raise SmartFedError(f"{run.path}: nothing to resume (no checkpoint); start the run without --resume")
        start, tensors, metadata = last
        population.restore(tensors, metadata, run.metrics()[-1].quotas)
        recorded, rate = run.provenance().get("learning_rate"), _rate(method, config).get("learning_rate")
        trains = method.trains_anything and start < config.federation.rounds
        moved = trains and recorded and rate and recorded != rate  # the method's own rate
        device, devices = side.provenance["device"], run.devices()
        # settings the resume changed (RESUMABLE_KEYS), a moved rate and another device (`auto` on another
        # machine: its joules count other CPU seconds), said in config.toml
        notes = [f"resumed with learning_rate = {rate} (was {recorded})"] if moved else []
        notes += [f"resumed on device = {device}"] if trains and devices[-1:] != [device] else []
        run.update_config(config, notes)
        return population, start
    run.create(config, side.provenance | _rate(method, config))
    record = RoundRecord(round=0, quotas=get_quotas(side.model))
    items = _scored_items(config, heldout, last=not method.trains_anything)  # a training-free method's round 0 is its last
    _set_heldout(record, population, evaluate(method, side, items, population.models()), config.eval.curve_examples)
    run.append_metrics(record)
    run.save_checkpoint(0, *population.checkpoint())
    return population, 0


def _rate(method: Method, config: RunConfig) -> dict[str, str]:
    """The rate the run trains at, for config.toml's header: training.lr = 0 there means "the method's own"
    (Method.lr, which a re-tuning moves). Nothing for a method that takes no gradient steps."""
    rate = method.learning_rate(config)
    return {} if rate is None else {"learning_rate": repr(rate)}


def play_round(config: RunConfig, method: Method, population: Population, exchange: Exchange, round_: int, log) -> RoundRecord:
    """Send, receive, check and fold in every client's update; aggregate. Raises RunFailed on too few."""
    requests = population.requests(round_)
    needs_importance = method.uses_eeqa(config)
    records, losses = [], []
    for reply in exchange(round_, requests):
        record = client_record(reply, requests[reply.client], population.sends)
        records.append(record)
        try:
            state = accept_reply(reply, population.reference(reply.client), needs_importance, requests[reply.client].quotas,
                                 config.aggregation)
        except UpdateRejected as err:
            record.status = f"rejected: {err}" if reply.upload is not None else reply.status
            log(f"round {round_}: client {reply.client} {record.status}")
            continue
        record.num_examples, record.importance, record.budget_k_avg = reply.num_examples, reply.importance, requests[reply.client].budget_k_avg
        record.train_loss, record.seconds = reply.metrics.get("train_loss"), reply.metrics.get("seconds")
        population.accept(reply.client, state, reply.num_examples, reply.importance)
        losses.append((reply.metrics.get("train_loss", float("nan")), reply.num_examples))
    if len(losses) < config.federation.min_clients:
        raise RunFailed(f"round {round_}: {len(losses)} client updates accepted, expected at least "
                        f"min_clients={config.federation.min_clients}")
    return RoundRecord(round=round_, clients=records, accepted=len(losses), **population.end_round(),
                       train_loss=sum(loss * n for loss, n in losses) / sum(n for _, n in losses),
                       bytes_up=sum(r.bytes_up for r in records), bytes_down=sum(r.bytes_down for r in records),
                       **round_energy(config.energy, records))


def client_record(reply: ClientReply, request: ClientRequest, sends: bool) -> ClientRecord:
    """Status, quotas and bytes of one reply; CPU seconds and tokens count even if it is rejected."""
    importance_bytes = len(json.dumps(reply.importance).encode()) if reply.importance else 0
    record = ClientRecord(client=reply.client, status=reply.status, quota_total=sum(request.quotas.values()))
    if sends:
        record.bytes_down = len(request.payload) + len(json.dumps(request.quotas).encode()) + request.extra_download_bytes
        record.bytes_up = len(reply.upload or b"") + importance_bytes
    record.cpu_s, record.tokens = reply.metrics.get("cpu_s"), reply.metrics.get("tokens")
    return record


def accept_reply(reply: ClientReply, reference: dict, needs_importance: bool, quotas: dict[str, int], bounds) -> dict:
    """The decoded, checked state of a reply; UpdateRejected says why it cannot be aggregated.
    `bounds`: the [aggregation] section (update norm, example count and importance limits)."""
    if reply.upload is None:
        raise UpdateRejected(reply.status)
    try:
        state = decode_state(reply.upload)
    except Exception as err:  # bytes that do not decode
        raise UpdateRejected(f"undecodable upload: {type(err).__name__}: {err}") from err
    check_update(state, reference, reply.num_examples, bounds.max_update_norm, bounds.max_num_examples)
    if needs_importance:
        check_importance(reply.importance, quotas, bounds.max_importance)
    return state


def evaluate(method: Method, side: ModelSide, heldout: list, models: list) -> list[list[tuple[float, int]]]:
    """Per-item (summed NLL, tokens) of each (state, quotas); a state shared by several entries is scored once."""
    cache: dict[tuple, list] = {}
    for state, quotas in models:
        key = (id(state), tuple(sorted(quotas.items())))
        if key not in cache:
            method.load_state_dict(side.model, state)
            set_quotas(side.model, quotas)
            cache[key] = item_losses(side.model, side.tokenizer, heldout, max_length=384, desc="evaluation loss")
    return [cache[(id(s), tuple(sorted(q.items())))] for s, q in models]


def _scored_items(config: RunConfig, heldout: list, last: bool) -> list:
    """The last round scores every held-out item (the reported loss); the others the curve's first ones."""
    return heldout if last else heldout[: config.eval.curve_examples or None]


def _set_heldout(record: RoundRecord, population: Population, per_model: list[list[tuple[float, int]]], curve: int) -> None:
    losses = [mean_loss(items) for items in per_model]
    record.heldout_loss = sum(losses) / len(losses)
    if isinstance(population, OwnModels):  # each client's own model
        record.heldout_loss_per_client = losses
        if curve and len(per_model[0]) > curve:
            record.curve_loss = sum(mean_loss(items[:curve]) for items in per_model) / len(per_model)
    else:
        record.heldout_items = per_model[0]


ROUND_HEADER = "| round | clients ok | train loss | held-out loss | MB up | MB down | wall s |\n|---:|---:|---:|---:|---:|---:|---:|"


def format_round(m: RoundRecord) -> str:
    held = f"{m.heldout_loss:.4f}" if m.heldout_loss is not None else "-"
    return (f"| {m.round:>3} | {m.accepted}/{len(m.clients)} | {m.train_loss:.4f} | {held} | "
            f"{m.bytes_up / 1e6:.2f} | {m.bytes_down / 1e6:.2f} | {m.wall_s:.1f} |")
