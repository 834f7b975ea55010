"""Settings chosen on the dev split, with a stated grid and the same training budget for every trial.

Stage 1 (routing): SmartFed's gate x router kind x init at the base learning rate.
Stage 2 (learning rate): every trained method at each rate of LR_GRID: FedIT, FFA-LoRA, FLoRA, the
module router, and SmartFed with stage 1's best routing. LoRAHub (no rate) and Arrow (nothing trained) run once.
Stage 3 (edges), the same rule for every method: where a method's best rate is at an edge of LR_GRID,
one more trial one step beyond it (EDGE); the choice is the best of all its trials.

With `routing_from` (another composition's tuning folder), stage 1 is not run: SmartFed's routing is
that folder's choice, and every method, SmartFed included, gets the same trials here (LR_GRID, then the edge rule).

Every trial is a run folder OUT/<trial> evaluated on the dev split only (eval.split = dev), never on
held-out data or benchmarks; OUT/tuning.json holds the grid, every trial's dev loss before and after
training, and the choice per method. A sweep that stops picks up where it stopped; several `smartfed tune`
of one folder side by side share its trials (each runs those no other holds, then waits for theirs). The keys a trial
does not set are pinned (PINNED), so the sweep means the same after `smartfed run`'s defaults follow it.
"""

import json
import time
from pathlib import Path

from smartfed.compare import run_comparison
from smartfed.config import RunConfig, load_config
from smartfed.errors import ConfigError
from smartfed.fed.run_folder import SUMMARY, RunFolder
from smartfed.io import atomic_write_text

GATES = ("softmax", "softmax-all", "scaled", "sigmoid")
ROUTINGS = (("linear", "random"), ("linear", "arrow"), ("activation", "random"), ("activation", "arrow"), ("arrow", "arrow"))
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
LR_METHODS = ("fedit", "ffa-lora", "flora", "module-router", "smartfed")
ONCE = ("lorahub", "arrow")
EDGE = {LR_GRID[0]: 3e-4, LR_GRID[-1]: 1e-1}  # grid edge -> the rate one step beyond it

# 10 clients, 3 a round, 3 rounds of 2 steps of 4 examples; dev loss on 32 items before and after.
SCALE = {"federation.num_clients": 10, "federation.clients_per_round": 3, "federation.rounds": 3, "training.local_steps": 2,
         "training.batch_size": 4, "training.max_length": 160, "eval.examples": 32, "eval.every": 3, "eval.split": "dev"}
# the routing and rate every trial starts from (the defaults before tuning), independent of today's defaults
PINNED = {"router.gate": "softmax", "router.kind": "linear", "router.init": "random", "training.lr": 5e-3}
QUICK = {"federation.num_clients": 4, "federation.clients_per_round": 2, "federation.min_clients": 1, "federation.rounds": 1,
         "training.local_steps": 1, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4, "eval.every": 1,
         "eval.split": "dev", "lorahub.search_budget": 6}


def routing_trials() -> dict[str, dict]:
    """Router-major: a sweep cut short has compared every gate on the paper's linear router first."""
    return {f"route-{gate}-{kind}-{init}": {"run.method": "smartfed", "router.gate": gate, "router.kind": kind, "router.init": init}
            for kind, init in ROUTINGS for gate in GATES}


def lr_trials(best_routing: dict) -> dict[str, dict]:
    setting = {m: {"run.method": m} for m in LR_METHODS} | {best_routing["run.method"]: best_routing}  # SmartFed: its best routing
    trials = {f"lr-{method}-{lr:g}": setting[method] | {"training.lr": lr} for method in LR_METHODS for lr in LR_GRID}
    return trials | {f"once-{m}": {"run.method": m} for m in ONCE}


def edge_trials(lrs: list[dict], best_routing: dict) -> dict[str, dict]:
    """Stage 3: one rate beyond the grid for each method whose best grid rate is at an edge (methods with all grid trials done)."""
    grid = lr_trials(best_routing)
    out = {}
    for method in LR_METHODS:
        mine = [r for r in lrs if r["keys"]["run.method"] == method and r["trial"] in grid]
        lr = min(mine, key=lambda r: r["dev_loss_end"])["keys"]["training.lr"] if len(mine) == len(LR_GRID) else None
        if lr in EDGE:
            out[f"lr-{method}-{EDGE[lr]:g}"] = grid[f"lr-{method}-{lr:g}"] | {"training.lr": EDGE[lr]}
    return out


def _configs(base: RunConfig, trials: dict[str, dict]) -> list[RunConfig]:
    return [base.with_values({"run.name": name, **keys}) for name, keys in trials.items()]


def _result(name: str, keys: dict, run_dir: Path) -> dict:
    """A finished trial as the record keeps it: its keys and its dev loss before and after training."""
    summary = RunFolder(run_dir).summary()  # losses measured on eval.split = dev
    return {"trial": name, "keys": keys, "dev_loss_start": summary.initial_heldout_loss, "dev_loss_end": summary.final_heldout_loss}


def _stage(base: RunConfig, trials: dict[str, dict], log, wait=time.sleep, poll_s: float = 30.0) -> list[dict]:
    """Run the stage's trials; those another `smartfed tune` of the same folder is running are left to it, and
    waited for (every trial's result is needed): so several sweeps side by side share one stage. A trial whose
    process died is free again and taken over at the next poll (it resumes from its last checkpoint); one whose
    process hangs holds the stage until it is stopped. Every trial is checked against this sweep's settings at
    the end, so one another sweep ran with other settings is an error, not a result."""
    configs = _configs(base, trials)
    run_comparison(configs, log=log)
    waiting_before: list[str] = []
    while waiting := [c for c in configs if not (c.run_dir / SUMMARY).is_file()]:
        if [c.run.name for c in waiting] != waiting_before:
            waiting_before = [c.run.name for c in waiting]
            log(f"waiting for {len(waiting)} trial(s) another process holds: {', '.join(waiting_before)}")
        wait(poll_s)
        run_comparison(waiting, log=log, log_busy=False)
    dirs = run_comparison(configs, log=lambda *_: None)  # all finished: only the settings check (ConfigError) is left
    return [_result(name, keys, d) for (name, keys), d in zip(trials.items(), dirs)]


def _best(results: list[dict], method: str) -> dict:
    return min((r for r in results if r["keys"]["run.method"] == method), key=lambda r: r["dev_loss_end"])


def routing_choice(tuning_dir: str) -> dict:
    """SmartFed's routing chosen by another sweep: its tuning.json choice, else its best finished routing trial."""
    record_path = Path(tuning_dir) / "tuning.json"
    if record_path.is_file():
        try:
            return _routing_keys(json.loads(record_path.read_text())["choice"]["smartfed"]["keys"])
        except (ValueError, KeyError, TypeError, ConfigError) as e:
            raise ConfigError(f"{record_path}: expected a tuning record with choice.smartfed.keys, found {type(e).__name__}: {e}") from e
    routing = finished_trials(tuning_dir)["routing_trials"]
    if len(routing) < len(routing_trials()):
        raise ConfigError(f"{tuning_dir}: expected its {len(routing_trials())} routing trials finished, found {len(routing)}")
    return _routing_keys(_best(routing, "smartfed")["keys"])


ROUTING_KEYS = ("run.method", "router.gate", "router.kind", "router.init")


def _routing_keys(keys: dict) -> dict:
    missing = [k for k in ROUTING_KEYS if k not in keys]
    if missing:
        raise ConfigError(f"routing choice {keys}: expected the keys {', '.join(ROUTING_KEYS)}, found none for {missing[0]}")
    return {k: keys[k] for k in ROUTING_KEYS}


def run_tuning(composition: str, out_dir: str, quick: bool = False, overrides: list[str] = (), log=print,
               routing_from: str | None = None) -> dict:
    """Both stages (or stage 2 with `routing_from`'s choice); the record is written to OUT/tuning.json and returned."""
    fixed = sorted({item.split("=", 1)[0] for item in overrides} & {"run.name", "run.method", "training.lr", "router.gate",
                                                                        "router.kind", "router.init", "eval.split"})
    if fixed:
        raise ConfigError(f"--set {fixed[0]}=...: expected a key the tuning does not choose itself")
    base = load_config(overrides=list(overrides), base={**(QUICK if quick else SCALE), **PINNED,
                                                        "data.composition": composition, "run.out_dir": out_dir})
    routing = [] if routing_from else _stage(base, routing_trials(), log)
    best_routing = routing_choice(routing_from) if routing_from else _routing_keys(_best(routing, "smartfed")["keys"])
    lrs = _stage(base, lr_trials(best_routing), log)
    lrs += _stage(base, edge_trials(lrs, best_routing), log)
    choice = {m: _best(lrs, m) for m in (*LR_METHODS, *ONCE)}
    record = {"composition": composition, "scale": {k: v for k, v in base.flat().items() if k in {**(QUICK if quick else SCALE), **PINNED}},
              "grid": {"gates": GATES, "routings": ROUTINGS, "lr": LR_GRID, "edge": {str(k): v for k, v in EDGE.items()},
                       "lr_methods": LR_METHODS, "once": ONCE},
              "routing_from": routing_from, "routing_trials": routing, "lr_trials": lrs, "choice": choice}
    atomic_write_text(Path(out_dir) / "tuning.json", json.dumps(record, indent=1))
    atomic_write_text(Path(out_dir) / "tuning.md", tuning_tables(record))
    return record


def finished_trials(out_dir: str, routing_from: str | None = None) -> dict:
    """What a sweep that has not finished holds so far: the trials with a summary, as a partial record."""
    def done(trials: dict[str, dict]) -> list[dict]:
        return [_result(name, keys, Path(out_dir) / name) for name, keys in trials.items()
                if (Path(out_dir) / name / SUMMARY).is_file()]

    routing = [] if routing_from else done(routing_trials())
    if routing_from:
        best = routing_choice(routing_from)
    else:
        best = _routing_keys(_best(routing, "smartfed")["keys"]) if routing else {"run.method": "smartfed"}
    lrs = done(lr_trials(best))
    lrs += done(edge_trials(lrs, best))
    methods = {r["keys"]["run.method"] for r in lrs}
    return {"composition": "(partial)", "routing_from": routing_from, "routing_trials": routing, "lr_trials": lrs,
            "choice": {m: _best(lrs, m) for m in methods}}


def tuning_tables(record: dict) -> str:
    lines = [f"Dev loss (eval.split = dev) before and after the same budget, {record['composition']}.", ""]
    if record.get("routing_from"):
        lines += [f"SmartFed's routing taken from {record['routing_from']} (no routing trials here).", ""]
    lines += ["| gate | router | init | dev loss start | dev loss end |", "|---|---|---|---:|---:|"]
    for r in record["routing_trials"]:
        k = r["keys"]
        lines.append(f"| {k['router.gate']} | {k['router.kind']} | {k['router.init']} | {r['dev_loss_start']:.4f} | {r['dev_loss_end']:.4f} |")
    lines += ["", "| method | lr | dev loss start | dev loss end | chosen |", "|---|---:|---:|---:|---|"]
    for r in record["lr_trials"]:
        chosen = "yes" if record["choice"][r["keys"]["run.method"]]["trial"] == r["trial"] else ""
        lr = r["keys"].get("training.lr", "-")
        lines.append(f"| {r['keys']['run.method']} | {lr} | {r['dev_loss_start']:.4f} | {r['dev_loss_end']:.4f} | {chosen} |")
    return "\n".join(lines) + "\n"
