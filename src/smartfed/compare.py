"""The paper's comparison as one runnable sweep: every method on the same composition, data,
partitions, clients, rounds, evaluation and byte accounting, then `smartfed report` over the runs.

A run that already has its summary is kept (a sweep picks up where it stopped); a run that stopped
mid-way is resumed from its last round.
"""

import json
import shutil
from pathlib import Path

from smartfed.config import RouterSection, RunConfig, load_config
from smartfed.errors import ConfigError, RunBusy
from smartfed.fed.run_folder import CHECKPOINTS, METRICS, SUMMARY, RunFolder
from smartfed.fed.simulation import run_simulation
from smartfed.methods import get_method

# run name -> config keys: SmartFed as `smartfed run` sets it (the headline run) with and without EEQA,
# every other router kind with and without EEQA, and every baseline.
_DEFAULT_KIND = RouterSection().kind
METHOD_RUNS: dict[str, dict] = {
    "smartfed": {"run.method": "smartfed"},
    "smartfed-topk": {"run.method": "smartfed", "eeqa.enabled": False},
    **{f"smartfed-{kind}{'' if eeqa else '-topk'}": {"run.method": "smartfed", "router.kind": kind, "eeqa.enabled": eeqa}
       for kind in ("linear", "activation", "lowrank") if kind != _DEFAULT_KIND for eeqa in (True, False)},
    "fedit": {"run.method": "fedit"},
    "ffa-lora": {"run.method": "ffa-lora"},
    "flora": {"run.method": "flora"},
    "lorahub": {"run.method": "lorahub"},
    "module-router": {"run.method": "module-router"},
    "arrow": {"run.method": "arrow"},
    "local": {"run.method": "local", "eval.every": 1_000_000},  # held-out loss once, at the end: it is per client
}

# The scale the README's results use on 2 CPU cores (its "Budget" section says how it was sized): 20 rounds of
# 2 clients taking 1 step of 4 examples; the reported held-out loss on 200 items after the last round, the
# curve on the first 32 of them every round; each composition's benchmark suites (STANDARD_SUITES).
STANDARD = {"federation.num_clients": 10, "federation.clients_per_round": 2, "federation.rounds": 20, "training.local_steps": 1,
            "training.batch_size": 4, "training.max_length": 160, "eval.examples": 200, "eval.curve_examples": 32}
# LoRAHub searches the config's default 12 loss evaluations per client round (LoRAHub's one-shot search uses 40).
# With 4 pool modules NGOpt runs COBYLA, which spends N + 1 = 5 evaluations on its first simplex (the start and +1
# on each module's weight) and then takes shrinking steps; the first runs here searched 4, never got past the
# simplex, tried +1 on three modules only, and the federated weights froze within a few rounds (README). Runs
# of the other methods made then record lorahub.search_budget = 4: they read no lorahub key, and resuming and
# grouping them ignore it (RunConfig.in_effect).
# MGSM-zh answers at most 128 new tokens (the suite's own limit is 256): the 135M models that do not answer in
# the format ramble to the limit, and generation was 24-26 min of a 40-min run. The two runs first scored at 256
# (zh+math Arrow and SmartFed seed 0, commit 00baae3) score 2 and 3 of 250 rescored at 128, against 3 and 4.
STANDARD_SUITES = {"zh+math": {"eval.suites": ["mgsm-zh"], "eval.score_examples": 250, "eval.max_new_tokens": 128},  # all of MGSM-zh
                   "math+code": {"eval.suites": ["gsm-hard-pal", "mbpp"], "eval.score_examples": 100},
                   "zh+code": {"eval.suites": ["humaneval", "mbpp"], "eval.score_examples": 100}}
# The CI smoke scale (--quick).
QUICK = {"federation.num_clients": 4, "federation.clients_per_round": 2, "federation.min_clients": 1, "federation.rounds": 2,
         "training.local_steps": 1, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4, "eval.score_examples": 2,
         "lorahub.search_budget": 6}  # the fewest that search past COBYLA's first simplex with 4 modules


def tuned_rates(tuning_dir: str, composition: str) -> dict[str, float]:
    """Method -> the learning rate `smartfed tune` chose for it on `composition`'s dev split (OUT/tuning.json).
    Only the rates: SmartFed's routing comes from the defaults (which follow the tuning) or --set."""
    path = Path(tuning_dir) / "tuning.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        rates = {method: float(c["keys"]["training.lr"]) for method, c in record["choice"].items() if "training.lr" in c["keys"]}
        tuned_on = record["composition"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: expected a tuning record (composition, choice.<method>.keys.training.lr), found {err!r}") from err
    if tuned_on != composition:
        raise ConfigError(f"{path}: expected a tuning on {composition}, found one on {tuned_on}")
    return rates


def comparison_configs(composition: str, out_dir: str, methods: list[str], fractions: list[float], quick: bool,
                       overrides: list[str] = (), seeds: list[int] = (0,), rates: dict[str, float] | None = None) -> list[RunConfig]:
    """One config per (method run, data fraction, seed); names say them (`fedit`, `fedit-frac0.1`, `fedit-seed2`;
    seed 0 keeps the plain name, so a sweep made before seeds existed is picked up). `rates`: each method's
    tuned learning rate (`tuned_rates`), applied to every run of that method."""
    unknown = [m for m in methods if m not in METHOD_RUNS]
    if unknown:
        raise ConfigError(f"unknown method run '{unknown[0]}': expected one of {', '.join(METHOD_RUNS)}")
    controlled = {"run.name", "run.seed", "data.fraction", *(k for run in METHOD_RUNS.values() for k in run),
                  *(("training.lr",) if rates else ())}
    fixed = sorted({item.split("=", 1)[0].strip() for item in overrides} & controlled)
    if fixed:
        raise ConfigError(f"--set {fixed[0]}=...: expected a key the sweep does not set itself (it sets {sorted(controlled)})")
    base = load_config(overrides=list(overrides),
                       base={**(QUICK if quick else STANDARD | STANDARD_SUITES.get(composition, {"eval.score_examples": 100})),
                             "data.composition": composition, "run.out_dir": out_dir})
    def rate(method: str) -> dict:
        lr = (rates or {}).get(METHOD_RUNS[method]["run.method"])
        return {} if lr is None else {"training.lr": lr}

    def runs_at(method: str, seed: int) -> bool:  # a training-free method is deterministic: its first seed stands for all
        return seed == seeds[0] or get_method(METHOD_RUNS[method]["run.method"]).trains_anything

    return [base.with_values({"run.name": _name(method, fraction, seed), "data.fraction": fraction, "run.seed": seed,
                              **METHOD_RUNS[method], **rate(method)})
            for seed in seeds for fraction in fractions for method in methods  # seed-major: a sweep cut short holds whole seeds
            if runs_at(method, seed)]


def _name(method: str, fraction: float, seed: int) -> str:
    return method + ("" if fraction == 1 else f"-frac{fraction:g}") + ("" if seed == 0 else f"-seed{seed}")


def _changed_settings(config: RunConfig) -> list[str]:
    """The resumable settings (evaluation, rounds) in which `config` differs from the run already in its
    folder; any other difference is an error: that run trained something else. A finished run over an
    earlier build of the same pool modules (another machine's) is kept as it is: it stands for that build."""
    folder, finished = RunFolder(config.run_dir), (config.run_dir / SUMMARY).is_file()
    changed = folder.changed_settings(config, finished=finished)  # ConfigError if that run trained something else
    if changed and finished and not (config.run_dir / CHECKPOINTS).is_dir():
        key, (old, new) = next(iter(changed.items()))
        raise ConfigError(f"{config.run_dir}: an earlier run with {key}={old!r}, expected {new!r}, and no checkpoints to "
                          f"resume it from (committed run folders have none): rerun it in another --out")
    return list(changed)


def pending_runs(configs: list[RunConfig]) -> list[Path]:
    """The run folders `run_comparison` would write: not finished, or finished with other evaluation settings
    (a rescore). A script can build what those runs need (a pool module) only where one is pending."""
    return [c.run_dir for c in configs if not (c.run_dir / SUMMARY).is_file() or _changed_settings(c)]


def run_comparison(configs: list[RunConfig], log=print, skip_busy: bool = True, log_busy: bool = True) -> list[Path]:
    """Run every config not finished yet; return the run folders in order. A finished run whose evaluation
    settings changed (e.g. eval.max_new_tokens) resumes from its last checkpoint and is scored again. A run
    another process is writing is skipped (its folder is returned unfinished; said in the log if `log_busy`),
    or, without `skip_busy`, RunBusy."""
    for config in configs:
        try:
            with RunFolder(config.run_dir).writing():
                _run_one(config, log)
        except RunBusy as err:  # another worker of the sweep runs it
            if not skip_busy:
                raise
            if log_busy:
                log(f"{err}: skipped here")
    return [c.run_dir for c in configs]


def _run_one(config: RunConfig, log) -> None:
    folder = config.run_dir
    changed = _changed_settings(config) if (folder / "config.toml").is_file() else []
    if (folder / SUMMARY).is_file() and not changed:
        rebuilt = RunFolder(folder).rebuilt_pool(config)
        log(f"{folder}: finished earlier, kept" + ("" if rebuilt is None else f" (over an earlier build of its pool "
            f"modules: adapters_sha256 {rebuilt[0][:12]}…, here {rebuilt[1][:12]}…; its results stand for that build)"))
        return
    resume = (folder / CHECKPOINTS).is_dir()
    if (folder / METRICS).exists() and not resume:
        for entry in folder.iterdir():  # killed before its first checkpoint: start afresh (the folder stays: it is held)
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    log(f"== {config.run.name}: method {config.run.method} ({get_method(config.run.method).trains(config)}), "
        f"data fraction {config.data.fraction:g}" + (f" (resuming; changed: {', '.join(changed)})" if changed else
                                                    " (resuming)" if resume else ""))
    run_simulation(config, resume=resume, log=log)
