"""`smartfed pool build | build-all | ship | margins | select | inspect`."""

from pathlib import Path


def add_parser(sub) -> None:
    from smartfed.data.compositions import COMPOSITIONS

    p = sub.add_parser("pool", help="build LoRA modules for the pool, or inspect adapter folders")
    commands = p.add_subparsers(dest="pool_command", required=True)

    def training_options(q) -> None:
        q.add_argument("--model")
        q.add_argument("--steps", type=int, help="default: as in BuildConfig")
        q.add_argument("--rank", type=int, help="default: as in BuildConfig")
        q.add_argument("--batch-size", type=int, help="default: as in BuildConfig")
        q.add_argument("--max-length", type=int, help="default: as in BuildConfig")
        q.add_argument("--lr", type=float, help="default: as in BuildConfig")
        q.add_argument("--seed", type=int, help="default: as in BuildConfig")
        q.add_argument("--data-dir", default=None, help="data folder (default: $SMARTFED_DATA or ../shared/data)")

    build = commands.add_parser("build", help="train one PEFT LoRA module on a skill's public data")
    build.add_argument("--skill", required=True, choices=list(COMPOSITIONS), help="the composition whose train split it learns")
    build.add_argument("--out", required=True, help="adapter folder to write (resumes if a build there was interrupted)")
    training_options(build)
    build.set_defaults(run=_run_build)

    build_all = commands.add_parser("build-all", help="the default pool: zh, math, code and instruct modules")
    build_all.add_argument("--out", help="default: the default pool folder of --model, where `smartfed run` looks for it")
    build_all.add_argument("--ship", action="store_true", help="then ship the modules with the package in bf16 (pool/ship.py)")
    training_options(build_all)
    build_all.set_defaults(run=_run_build_all)

    ship = commands.add_parser("ship", help="copy built default modules into the package in bf16, where `smartfed run` finds them first")
    ship.add_argument("--model")
    ship.add_argument("--from", dest="source", help="built pool folder (default: where build-all puts the default pool of --model)")
    ship.set_defaults(run=_run_ship)

    select = commands.add_parser("select", help="pick the modules of a manifest most relevant to a task, and say why")
    select.add_argument("--manifest", required=True, help="TOML library manifest ([[module]] name, source, sha256, skills, license)")
    select.add_argument("--task", required=True, help="a composition: its dev split's first --examples items score each module")
    select.add_argument("-n", type=int, default=4, help="how many modules to pick")
    select.add_argument("--examples", type=int, default=16)
    select.add_argument("--model", default="smollm2-135m-instruct")
    select.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    select.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 | 4bit | 8bit")
    select.add_argument("--data-dir", default=None)
    select.set_defaults(run=_run_select)

    margins = commands.add_parser("margins", help="each module's loss on its own skill's dev split against the base model's, "
                                                   "for one or more pools side by side, with paired 95%% intervals")
    margins.add_argument("--pool", action="append", required=True, metavar="LABEL=DIR",
                         help="a pool folder holding one module folder per skill (repeat to compare pools)")
    margins.add_argument("--skills", default="zh,math,code,instruct", help="comma-separated; each pool needs DIR/<skill>")
    margins.add_argument("--examples", type=int, default=100, help="dev items per skill (fewer if the split is smaller)")
    margins.add_argument("--model", default="smollm2-135m-instruct")
    margins.add_argument("--out", help="also write <out>.md and <out>.json (per-item cells)")
    margins.add_argument("--data-dir", default=None)
    margins.set_defaults(run=_run_margins)

    inspect = commands.add_parser("inspect", help="rank, alpha, targets and base-model fit of adapter folders")
    inspect.add_argument("folders", nargs="+")
    inspect.add_argument("--model", default="smollm2-135m-instruct")
    inspect.set_defaults(run=_run_inspect)


def _overrides(args) -> dict:
    """The options given on the command line; BuildConfig's defaults fill the rest."""
    given = dict(model=args.model, steps=args.steps, rank=args.rank, batch_size=args.batch_size,
                 max_length=args.max_length, lr=args.lr, seed=args.seed, data_dir=args.data_dir)
    if args.rank is not None:
        given["alpha"] = 2.0 * args.rank
    return {k: v for k, v in given.items() if v is not None}


def _run_build(args) -> None:
    from smartfed.pool.build import BuildConfig, build_module

    print(build_module(BuildConfig(skill=args.skill, out=args.out, **_overrides(args))))


def _run_build_all(args) -> None:
    from smartfed.models import DEFAULT_MODEL
    from smartfed.pool.build import build_all
    from smartfed.pool.resolve import default_pool_dir

    model = args.model or DEFAULT_MODEL
    folders = build_all(args.out or str(default_pool_dir(model)), **_overrides(args))
    for folder in folders:
        print(folder)
    if args.ship:
        _ship(folders, model)


def _ship(folders: list, model: str) -> None:
    from smartfed.pool.ship import ship_pool

    for folder in ship_pool(folders, model):
        print(f"shipped: {folder}")


def _run_ship(args) -> None:
    from smartfed.models import DEFAULT_MODEL
    from smartfed.pool.resolve import DEFAULT_SKILLS, default_pool_dir

    model = args.model or DEFAULT_MODEL
    source = Path(args.source) if args.source else default_pool_dir(model)
    _ship([source / skill for skill in DEFAULT_SKILLS], model)


def _run_select(args) -> None:
    from smartfed.eval.module_selection import score_modules
    from smartfed.models import load_base_model
    from smartfed.pool.sources import read_manifest

    model, tokenizer = load_base_model(args.model, args.dtype, args.device)
    scores = score_modules(model, tokenizer, read_manifest(args.manifest), args.task, args.examples, args.data_dir)
    print(f"| module | picked | why |\n|---|---|---|")
    for rank, score in enumerate(scores):
        print(f"| {score.module.name} | {'yes' if rank < args.n else 'no'} | {score.why(args.examples, args.task)} |")
    chosen = ", ".join(f'"{s.pinned_source}"' for s in scores[: args.n])  # a run over them refuses other weights
    print(f"\n[pool]\nadapters = [{chosen}]")


def _run_margins(args) -> None:
    import json

    import numpy as np

    from smartfed.data import composition_splits
    from smartfed.eval.module_selection import alone_item_losses
    from smartfed.io import atomic_write_text, shown_path
    from smartfed.models import load_base_model
    from smartfed.report.stats import interval, paired

    labelled = [_label_dir(item) for item in args.pool]
    labels = [label for label, _ in labelled]
    if "base" in labels or len(set(labels)) != len(labels):
        raise SystemExit(f"smartfed pool margins: --pool labels expected distinct and not 'base' (the base model's column), found {labels}")
    pools = dict(labelled)
    skills = [s.strip() for s in args.skills.split(",") if s.strip()]
    missing = [f"{d / s}" for d in pools.values() for s in skills if not (d / s / "adapter_config.json").is_file()]
    if missing:
        raise SystemExit(f"smartfed pool margins: expected a module folder (adapter_config.json) at {missing[0]}, found none")
    model, tokenizer = load_base_model(args.model)
    cells = {}  # skill -> {"base": per-item cells, label: those of the pool's module for the skill}
    for s in skills:
        base, alone = alone_item_losses(model, tokenizer, composition_splits(s, args.data_dir).dev[: args.examples],
                                        {label: d / s for label, d in pools.items()}, max_length=256)
        cells[s] = {"base": base, **alone}
    arrays = lambda c: (np.array([[t for t, _ in c]]), np.array([[n for _, n in c]]))  # noqa: E731  (1 seed, items)
    labels = list(pools)
    head = "| skill | dev items | base | " + " | ".join(f"{l} | {l} - base" for l in labels)
    head += "".join(f" | {b} - {a}" for a, b in zip(labels, labels[1:])) + " |"
    lines = [f"Teacher-forced loss (nats per answer token) on each skill's dev split; 95% bootstrap intervals over items, "
             f"paired where two columns are compared. Model {args.model}. Pools: "
             + ", ".join(f"{l} = {shown_path(d)}" for l, d in pools.items()), "", head, "|---" * (head.count("|") - 1) + "|"]
    for s, by in cells.items():
        row = [s, str(len(by["base"])), "{:.4f} [{:.4f}, {:.4f}]".format(*interval(*arrays(by["base"])))]
        for l in labels:
            row += ["{:.4f}".format(interval(*arrays(by[l]))[0]), "{:+.4f} [{:+.4f}, {:+.4f}]".format(*paired(arrays(by[l]), arrays(by["base"]))[:3])]
        row += ["{:+.4f} [{:+.4f}, {:+.4f}]".format(*paired(arrays(by[b]), arrays(by[a]))[:3]) for a, b in zip(labels, labels[1:])]
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        atomic_write_text(f"{args.out}.md", table)
        atomic_write_text(f"{args.out}.json", json.dumps({"model": args.model, "pools": {l: shown_path(d) for l, d in pools.items()},
                                                          "cells": cells}, indent=1))


def _label_dir(item: str) -> tuple[str, Path]:
    label, sep, folder = item.partition("=")
    if not sep or not label or not folder:
        raise SystemExit(f"smartfed pool margins: --pool expected LABEL=DIR, found {item!r}")
    return label, Path(folder).expanduser()


def _run_inspect(args) -> None:
    import json

    from smartfed.errors import AdapterError
    from smartfed.models import load_base_model
    from smartfed.pool import read_adapter

    model, _ = load_base_model(args.model)
    print(f"| module | r | alpha | rsLoRA | adapted matrices | experts | targets | fits {args.model} |")
    print("|---|---:|---:|---|---:|---:|---|---|")
    for folder in args.folders:
        config_path = Path(folder) / "adapter_config.json"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            config = {}  # read_adapter below names the file and what is wrong with it
        config = config if isinstance(config, dict) else {}
        try:
            adapter = read_adapter(folder, model)
            fit, matrices, experts = "yes", len(adapter.matrices), adapter.rank_total
        except AdapterError as err:
            fit, matrices, experts = f"no: {err}", "-", "-"
        targets = config.get("target_modules")
        targets = ", ".join(sorted(targets)) if isinstance(targets, list) else targets
        print(f"| {Path(folder).name} | {config.get('r', '?')} | {config.get('lora_alpha', '?')} | {config.get('use_rslora', False)} "
              f"| {matrices} | {experts} | {targets} | {fit} |")
