"""The paper's comparison as one runnable sweep: every method on the same composition, data,
partitions, clients, rounds, evaluation and byte accounting, then `smartfed report` over the runs.

A run that already has its summary is kept (a sweep picks up where it stopped); a run that stopped
mid-way is resumed from its last round (`local` runs are started again).
"""

import shutil
from dataclasses import fields, replace
from pathlib import Path

from smartfed.fed.config import ConfigError, RunConfig, load_config
from smartfed.fed.run_folder import SUMMARY, RunFolder

# run name -> config keys: every router kind with and without EEQA, and every baseline.
METHOD_RUNS: dict[str, dict] = {
    **{f"smartfed-{kind}{'' if eeqa else '-topk'}": {"method": "smartfed", "router": kind, "eeqa": eeqa}
       for kind in ("linear", "activation", "lowrank") for eeqa in (True, False)},
    "fedit": {"method": "fedit"},
    "ffa-lora": {"method": "ffa-lora"},
    "lorahub": {"method": "lorahub"},
    "module-router": {"method": "module-router"},
    "local": {"method": "local", "eval_every": 1_000_000},  # held-out loss once, at the end: it is per client
}

# The scale the README's results use on 2 CPU cores, and the CI smoke scale (--quick).
STANDARD = {"num_clients": 10, "clients_per_round": 3, "rounds": 4, "local_steps": 3, "batch_size": 4, "max_length": 160,
            "eval_examples": 24, "score_examples": 8}
QUICK = {"num_clients": 4, "clients_per_round": 2, "min_clients": 1, "rounds": 2, "local_steps": 1, "batch_size": 2,
         "max_length": 64, "eval_examples": 4, "score_examples": 2, "search_budget": 3}


def comparison_configs(composition: str, out_dir: str, methods: list[str], fractions: list[float], quick: bool,
                       overrides: list[str] = ()) -> list[RunConfig]:
    """One config per (method, data fraction); names say both (`fedit`, `fedit-frac0.1`)."""
    unknown = [m for m in methods if m not in METHOD_RUNS]
    if unknown:
        raise ConfigError(f"unknown method run '{unknown[0]}': expected one of {', '.join(METHOD_RUNS)}")
    controlled = {"name", "data_fraction", *(k for run in METHOD_RUNS.values() for k in run)}
    fixed = sorted({item.split("=", 1)[0].strip() for item in overrides} & controlled)
    if fixed:
        raise ConfigError(f"--set {fixed[0]}=...: expected a key the sweep does not set itself (it sets {sorted(controlled)})")
    base = load_config(overrides=list(overrides), base={**(QUICK if quick else STANDARD), "composition": composition, "out_dir": out_dir})
    configs = []
    for method in methods:
        for fraction in fractions:
            name = method if fraction == 1 else f"{method}-frac{fraction:g}"
            configs.append(replace(base, name=name, data_fraction=fraction, **METHOD_RUNS[method]))
    return configs


def run_comparison(configs: list[RunConfig], log=print) -> list[Path]:
    """Run every config not finished yet; return the run folders in order."""
    from smartfed.fed.simulation import run_simulation

    for config in configs:
        folder = config.run_dir
        if (folder / "config.toml").is_file():
            earlier = RunFolder(folder).config()
            differ = [f.name for f in fields(RunConfig) if getattr(earlier, f.name) != getattr(config, f.name)]
            if differ:
                raise ConfigError(f"{folder / 'config.toml'}: an earlier run with other settings ({', '.join(differ)}); "
                                  f"expected {differ[0]}={getattr(config, differ[0])!r}, found {getattr(earlier, differ[0])!r}: use another --out")
        if (folder / SUMMARY).is_file():
            log(f"{folder}: finished earlier, kept")
            continue
        resume = (folder / "checkpoints").is_dir() and config.method != "local"
        if (folder / "metrics.jsonl").exists() and not resume:
            shutil.rmtree(folder)  # an unfinished `local` run, or one killed before its first checkpoint
        log(f"== {config.name}: method {config.method}" + (f", router {config.routed_with}" if config.routed_with else "")
            + f", data fraction {config.data_fraction:g}" + (" (resuming)" if resume else ""))
        run_simulation(config, resume=resume, log=log)
    return [c.run_dir for c in configs]
