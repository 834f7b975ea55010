"""Held-out items that a pool module trained on, and what the comparison says without them.

Splits are drawn per source, by a hash of each item's id (smartfed.data.compositions). Sources derived from one
upstream dataset have other ids: gsm8k-train, gsm8k-eqn-train and gsm8k-pal-train hold the same GSM8K questions in
three answer formats. So a question that math+code holds out (gsm8k-pal-train) may be a training question of the
default pool's math module (gsm8k-train, chain-of-thought answers). This finds, for each run, the reported held-out
items whose prompt (normalised) one of its pool's modules trained on (the module's batches rebuilt from its card;
only where the modules found here are the bytes the run recorded), and compares the run with FedIT (same composition
and seed) on all the items and on the rest (both scored without the run's seen items; a run that reads no pool,
FedIT's or FFA-LoRA's, has none).

    .venv/bin/python experiments/overlap.py docs/results/math+code docs/results/math+code-pool-*   # seconds, no model
"""

import argparse
import sys
from functools import cache
from pathlib import Path

import numpy as np

from smartfed.data.compositions import normalised_prompt
from smartfed.fed.workspace import evaluation_set
from smartfed.pool.build import trained_examples
from smartfed.fed.run_folder import RunFolder, pool_folders
from smartfed.pool.resolve import adapters_digest
from smartfed.report.runs import RunResult, loss_cells
from smartfed.report.stats import interval, paired


@cache
def _seen_prompts(folder: Path) -> frozenset[str]:
    return frozenset(normalised_prompt(e.prompt) for e in trained_examples(folder))


def _modules(run: RunResult) -> list[Path]:
    """The modules a run reads: none for a fresh LoRA (FedIT, FFA-LoRA), else its pool's."""
    if not run.method.ships_pool:
        return []
    folders = pool_folders(run.config)
    if folders is None:
        raise SystemExit(f"{run.config.run_dir}: its default pool is neither shipped nor built here")
    return folders


def _cells(run: RunResult, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nll, tokens = loss_cells([run])  # (1 seed, items) each, as the report's statistics take them
    return nll[:, keep], tokens[:, keep]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="results folders (each holds run folders)")
    args = parser.parse_args(argv)
    runs = [RunResult.read(s.parent) for folder in args.folders for s in sorted(folder.glob("*/summary.json"))]
    fedit = {}  # (composition, seed) -> the FedIT run every other run of that composition and seed is paired with
    for r in runs:
        if r.config.run.method == "fedit" and r.config.data.fraction == 1:
            key = (r.config.data.composition, r.config.run.seed)
            if key in fedit:
                raise SystemExit(f"two FedIT runs of {key[0]} at seed {key[1]}: {fedit[key].config.run_dir} and {r.config.run_dir}")
            fedit[key] = r
    print("| run | seed | held-out items a module trained on | loss, all items | loss, the others | - FedIT's, all | - FedIT's, the others |")
    print("|---|---:|---|---|---|---|---|")
    for run in runs:
        name = f"{Path(run.config.run.out_dir).name}/{run.name}"
        if run.loss_items is None:
            print(f"| {name} | {run.config.run.seed} | not known: no per-item held-out losses recorded | | | | |")
            continue
        composition, n = run.config.data.composition, len(run.loss_items)
        heldout = evaluation_set(run.config)  # the items the run scored, in its order
        if len(heldout) != n:
            raise SystemExit(f"{run.config.run_dir}: {n} scored items recorded, expected {len(heldout)} (eval.examples)")
        modules = _modules(run)
        unknown = [str(m) for m in modules if not (m / "smartfed_card.json").is_file()]
        recorded = RunFolder(run.config.run_dir).provenance().get("adapters_sha256")
        if unknown:  # a module not built here (or not by `smartfed pool build`): what it trained on is not known
            print(f"| {name} | {run.config.run.seed} | not known: no card in {', '.join(unknown)} | | | | |")
            continue
        if modules and recorded and adapters_digest(modules) != recorded:
            print(f"| {name} | {run.config.run.seed} | not known: the modules found here are not the run's (adapters_sha256 "
                  f"{recorded[:8]}, found {adapters_digest(modules)[:8]}) | | | | |")
            continue
        seen = set().union(*(_seen_prompts(m) for m in modules))
        hit = np.array([normalised_prompt(e.prompt) in seen for e in heldout])
        reference = fedit.get((composition, run.config.run.seed))

        def versus(keep: np.ndarray) -> str:
            if reference is run:
                return "-"
            if reference is None:
                return "no FedIT run"
            if loss_cells([run, reference]) is None:  # not the same items (counts, answer tokens): no pairing
                return "not the same items as FedIT's"
            estimate, low, high, _ = paired(_cells(run, keep), _cells(reference, keep))
            return f"{estimate:+.4f} [{low:+.4f}, {high:+.4f}]"

        everything, clean = np.ones(n, dtype=bool), ~hit
        print(f"| {name} | {run.config.run.seed} | {hit.sum()} of {n} | {interval(*_cells(run, everything))[0]:.4f} | "
              f"{interval(*_cells(run, clean))[0]:.4f} | {versus(everything)} | {versus(clean)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
