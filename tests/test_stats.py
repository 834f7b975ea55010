"""Bootstrap intervals and paired tests against a plain loop, and the statistics table on runs built by hand."""

import json

import numpy as np
import pytest

from smartfed.config import load_config
from smartfed.fed.records import ClientRecord, RoundRecord, Summary
from smartfed.report.runs import RunResult, settings
from smartfed.report.statistics import eeqa_table, statistics_table
from smartfed.report.stats import DRAWS, interval, paired


def loop_interval(values, weights, rng_seed=0):
    """The same bootstrap written as a plain loop over draws and cells."""
    rng = np.random.default_rng(rng_seed)
    seeds, items = values.shape
    s_draws, i_draws = rng.integers(0, seeds, (DRAWS, seeds)), rng.integers(0, items, (DRAWS, items))
    stats = []
    for s_idx, i_idx in zip(s_draws, i_draws):
        v = w = 0.0
        for s in s_idx:
            for i in i_idx:
                v, w = v + values[s, i], w + weights[s, i]
        stats.append(v / w)
    return values.sum() / weights.sum(), np.percentile(stats, 2.5), np.percentile(stats, 97.5)


def test_interval_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    values, weights = rng.gamma(2.0, 3.0, (3, 20)), rng.integers(5, 40, (3, 20)).astype(float)
    assert interval(values, weights) == pytest.approx(loop_interval(values, weights), rel=1e-9)
    flat = np.full((2, 10), 3.0)
    assert interval(flat, np.ones_like(flat)) == (3.0, 3.0, 3.0)  # no noise: no width


def test_paired_differences():
    rng = np.random.default_rng(1)
    a = (rng.gamma(2.0, 1.0, (3, 30)), np.ones((3, 30)))
    estimate, low, high, p = paired(a, a)
    assert (estimate, low, high, p) == (0.0, 0.0, 0.0, 1.0)
    shifted = (a[0] + 0.5, a[1])
    estimate, low, high, p = paired(shifted, a)
    assert estimate == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5) and p == 1 / DRAWS
    with pytest.raises(ValueError, match="same seeds x items"):
        paired(a, (a[0][:2], a[1][:2]))


def run(name, method, seed, items, scores, *overrides):
    metrics = [RoundRecord(round=0, heldout_loss=9.0), RoundRecord(round=1, heldout_loss=sum(t for t, _ in items) / sum(n for _, n in items),
                                                                    heldout_items=items, clients=[ClientRecord(client=0, tokens=1)])]
    summary = Summary(method=method, rounds=1, initial_heldout_loss=9.0, final_heldout_loss=metrics[-1].heldout_loss, cumulative_bytes_up=1,
                      cumulative_bytes_down=1, state_bytes=1, pool_bytes_per_client_once=0, energy_compute_j=1.0, energy_radio_j=0.0,
                      client_cpu_s=1.0, wall_s=1.0, final_checkpoint="")
    config = load_config(overrides=[f"run.method={method}", f"run.seed={seed}", f"run.name={name}", *overrides])
    return RunResult(name, config, metrics, summary, {"mbpp": scores})


def test_seeds_group_on_what_their_method_reads():
    fedit = [run("fedit", "fedit", 0, [(2.0, 2)], [1.0], "lorahub.search_budget=4"), run("fedit-seed1", "fedit", 1, [(2.0, 2)], [1.0])]
    hub = [run("lorahub", "lorahub", 0, [(2.0, 2)], [1.0], "lorahub.search_budget=4"), run("lorahub-seed1", "lorahub", 1, [(2.0, 2)], [1.0])]
    groups = settings(fedit + hub)
    assert {label: [r.name for r in runs] for label, runs in groups.items()} == {
        "fedit": ["fedit", "fedit-seed1"], "lorahub": ["lorahub"], "lorahub-seed1": ["lorahub-seed1"]}  # 4 and 12 evaluations


def test_seeds_group_across_where_they_ran_but_not_across_what_they_ran():
    """A seed run on a GPU machine, its adapters and output unpacked elsewhere, joins the CPU seeds of its setting;
    another adapter, a dtype or another results folder keeps a run apart."""
    cpu = run("router", "module-router", 0, [(2.0, 2)], [1.0], "pool.adapters=['/work/pool/zh','/home/x/cov/math-eqn']", "run.out_dir=/work/docs/zh+math-pool-matched")
    gpu = run("router-seed1", "module-router", 1, [(2.0, 2)], [1.0], "pool.adapters=['/tmp/w/pool/zh','/tmp/cache/cov/math-eqn']",
              "run.out_dir=/tmp/w/docs/zh+math-pool-matched", "model.device=cuda", "data.dir=/tmp/data")
    other_pool = run("router-seed2", "module-router", 2, [(2.0, 2)], [1.0], "pool.adapters=['/work/pool/zh','/work/pool/code']", "run.out_dir=/work/docs/zh+math-pool-matched")
    bf16 = run("router-seed3", "module-router", 3, [(2.0, 2)], [1.0], "pool.adapters=['/work/pool/zh','/home/x/cov/math-eqn']", "run.out_dir=/work/docs/zh+math-pool-matched", "model.dtype=bfloat16")
    other_folder = run("router-seed4", "module-router", 4, [(2.0, 2)], [1.0], "pool.adapters=['/work/pool/zh','/home/x/cov/math-eqn']", "run.out_dir=/work/docs/elsewhere")
    groups = settings([cpu, gpu, other_pool, bf16, other_folder])
    assert {label: [r.name for r in runs] for label, runs in groups.items()} == {
        "router": ["router", "router-seed1"], "router-seed2": ["router-seed2"], "router-seed3": ["router-seed3"], "router-seed4": ["router-seed4"]}


def test_statistics_table_groups_seeds_and_compares_with_fedit():
    fedit = [run(f"fedit-seed{s}", "fedit", s, [(2.0 + s, 2), (4.0, 2)], [1.0, 0.0]) for s in (0, 1)]
    smart = [run(f"smartfed-seed{s}", "smartfed", s, [(1.0 + s, 2), (2.0, 2)], [1.0, 1.0]) for s in (0, 1)]
    table = statistics_table(fedit + smart)
    # by hand: FedIT (2+4+3+4)/8 = 1.625; SmartFed (1+2+2+2)/8 = 0.875; difference -0.75; scores 50% and 100%
    fedit_row = next(line for line in table.splitlines() if line.startswith("| fedit-seed0 |"))
    smart_row = next(line for line in table.splitlines() if line.startswith("| smartfed-seed0 |"))
    assert "| 2 | 1.6250 [" in fedit_row and "| 2 | 0.8750 [" in smart_row
    assert "| -0.7500 [" in smart_row and "| 50.0 [" in fedit_row and "| 100.0 [100.0, 100.0] | +50.0 [" in smart_row


def test_the_eeqa_ablation_pairs_each_setting_with_its_fixed_top_k_twin():
    eeqa = [run(f"smartfed-seed{s}", "smartfed", s, [(1.0 + s, 2), (2.0, 2)], [1.0, 1.0]) for s in (0, 1)]
    fixed = [run(f"smartfed-topk-seed{s}", "smartfed", s, [(2.0, 2), (2.0 + s, 2)], [0.0, 1.0]) for s in (0, 1)]
    for r in fixed:
        r.config = r.config.with_values({"eeqa.enabled": False})
    fedit = [run(f"fedit-seed{s}", "fedit", s, [(2.0, 2), (2.0, 2)], [1.0, 0.0]) for s in (0, 1)]
    table = eeqa_table(eeqa + fixed + fedit)
    # by hand: EEQA (1+2+2+2)/8 = 0.875, fixed top-k (2+2+2+3)/8 = 1.125: -0.25; scores 100% against 50%: +50
    (row,) = [line for line in table.splitlines() if line.startswith("| smartfed-seed0 - smartfed-topk-seed0 |")]
    assert "| 2 | -0.2500 [" in row and "| +50.0 [" in row
    assert "fedit" not in table and eeqa_table(eeqa + fedit) is None  # no fixed top-k twin: no table
    (row,) = [line for line in eeqa_table(eeqa + fixed[:1]).splitlines() if line.startswith("| smartfed-seed0 -")]
    # seed 0 only: EEQA (1+2)/4 = 0.75, fixed (2+2)/4 = 1.0: -0.25, named as seed 0's; the seeds column counts the pairs
    assert "| 1 | -0.2500 [" in row and row.count("(seed 0 only) |") == 2
    unscored = [RunResult(r.name, r.config, r.metrics, r.summary, {}) for r in eeqa + fixed]  # no suites: no empty column
    assert eeqa_table(unscored).splitlines()[:2] == ["| EEQA - fixed top-k | seeds | held-out loss [95% CI], p |", "|---|---:|---|"]


def test_settings_with_other_seeds_than_fedit_are_paired_on_the_seeds_both_ran():
    fedit = [run(f"fedit-seed{s}", "fedit", s, [(2.0 + s, 2), (4.0, 2)], [1.0, 0.0]) for s in (0, 1)]
    smart = [run(f"smartfed-seed{s}", "smartfed", s, [(1.0 + s, 2), (2.0, 2)], [1.0, 1.0]) for s in (1, 2)]
    lone = run("ffa-lora-seed3", "ffa-lora", 3, [(1.0, 2), (1.0, 2)], [1.0, 1.0])
    table = statistics_table(fedit + smart + [lone])
    row = next(line for line in table.splitlines() if line.startswith("| smartfed-seed1 |"))
    # by hand, seed 1 only: SmartFed (2+2)/4 = 1.0, FedIT (3+4)/4 = 1.75: -0.75; scores 100% against 50%: +50
    # the setting's own mean stays over both its seeds: (2+2+3+2)/8 = 1.125
    assert "| 2 | 1.1250 [" in row and "| -0.7500 [" in row and "| +50.0 [" in row
    assert row.count("(seed 1 only) |") == 2
    lone_row = next(line for line in table.splitlines() if line.startswith("| ffa-lora-seed3 |"))
    assert lone_row.count("| - |") == 2  # no seed in common with FedIT: nothing to pair
    same = statistics_table(fedit + [run(f"smartfed-seed{s}", "smartfed", s, [(1.0, 2), (2.0, 2)], [1.0, 1.0]) for s in (0, 1)])
    assert "only)" not in same  # the same seeds on both sides: no note


def test_a_training_free_run_is_paired_with_every_seed_of_fedit():
    fedit = [run(f"fedit-seed{s}", "fedit", s, [(2.0 + s, 2), (4.0, 2)], [1.0, 0.0]) for s in (0, 1)]
    arrow = run("arrow", "arrow", 0, [(3.0, 2), (3.0, 2)], [0.0, 1.0])
    row = next(line for line in statistics_table(fedit + [arrow]).splitlines() if line.startswith("| arrow |"))
    # by hand: Arrow 6/4 = 1.5 at both seeds, FedIT 1.625: -0.125; scores 50% against 50%: +0.0
    assert "| 1 | 1.5000 [" in row and "| -0.1250 [" in row and "| +0.0 [" in row


def test_comparison_sweeps_name_their_seeds(tmp_path):
    from smartfed.compare import comparison_configs

    configs = comparison_configs("zh+math", str(tmp_path), ["fedit", "arrow"], [1.0, 0.1], quick=True, seeds=[0, 2])
    assert [(c.run.name, c.run.seed, c.data.fraction) for c in configs] == [  # seed-major: a sweep cut short holds whole seeds
        ("fedit", 0, 1.0), ("arrow", 0, 1.0), ("fedit-frac0.1", 0, 0.1), ("arrow-frac0.1", 0, 0.1),
        ("fedit-seed2", 2, 1.0), ("fedit-frac0.1-seed2", 2, 0.1)]  # arrow trains nothing: one seed stands for all


def test_each_setting_is_compared_with_fedit_on_its_own_data_fraction():
    fedit = [run(f"fedit-seed{s}", "fedit", s, [(2.0, 2), (4.0, 2)], [1.0, 0.0]) for s in (0, 1)]
    small = [run(f"fedit-frac0.1-seed{s}", "fedit", s, [(6.0, 2), (6.0, 2)], [0.0, 0.0]) for s in (0, 1)]
    smart = [run(f"smartfed-frac0.1-seed{s}", "smartfed", s, [(4.0, 2), (4.0, 2)], [1.0, 1.0]) for s in (0, 1)]
    for r in small + smart:
        r.config = r.config.with_values({"data.fraction": 0.1})
    table = statistics_table(fedit + small + smart)
    row = next(line for line in table.splitlines() if line.startswith("| smartfed-frac0.1-seed0 |"))
    assert "| -1.0000 [" in row  # 2.0 - 3.0 against FedIT at 10% of the data, not +0.5 against FedIT on all of it
    # the data-fraction sweep runs FedIT on all the data only: 2.0 - 1.5 against it (per item 2 - 1 and 2 - 2), said in the cell
    no_suites = [RunResult(r.name, r.config, r.metrics, r.summary, {}) for r in fedit + smart]  # the sweep scores none
    table = statistics_table(no_suites).splitlines()
    assert table[0] == "| setting | seeds | held-out loss [95% CI] | - FedIT's [95% CI], p |" and table[1] == "|---|---:|---|---|"
    row = next(line for line in statistics_table(fedit + smart).splitlines() if line.startswith("| smartfed-frac0.1-seed0 |"))
    assert "| +0.5000 [+0.0000, +1.0000], p=" in row and row.split(" | ")[3].endswith(" (FedIT on all the data)")
    # a FedIT at another scale (more clients a round) is no reference, at any fraction
    other = [RunResult(r.name, r.config.with_values({"federation.clients_per_round": 3}), r.metrics, r.summary, r.score_items)
             for r in fedit]
    row = next(line for line in statistics_table(other + smart).splitlines() if line.startswith("| smartfed-frac0.1-seed0 |"))
    assert row.split(" | ")[3] == "-"



def test_runs_of_one_config_under_other_names_stay_apart():
    from smartfed.report.runs import settings

    runs = [run("smartfed", "smartfed", 0, [(1.0, 1)], [1.0]), run("smartfed-linear", "smartfed", 0, [(1.0, 1)], [1.0]),
            run("smartfed-seed1", "smartfed", 1, [(1.0, 1)], [1.0])]
    assert {label: [r.name for r in rs] for label, rs in settings(runs).items()} == {
        "smartfed": ["smartfed", "smartfed-seed1"], "smartfed-linear": ["smartfed-linear"]}


def test_runs_pair_only_on_the_same_items():
    """Pairing is by item, not by position: runs that scored other items of a suite (other ids), or held-out items
    with other answer-token counts, get no paired cell ("-"), though their counts agree."""
    fedit = run("fedit", "fedit", 0, [(2.0, 2), (4.0, 2)], [1.0, 0.0])
    smart = run("smartfed", "smartfed", 0, [(1.0, 2), (2.0, 2)], [1.0, 1.0])
    fedit.score_ids, smart.score_ids = {"mbpp": ["Mbpp/1", "Mbpp/2"]}, {"mbpp": ["Mbpp/1", "Mbpp/2"]}
    row = next(line for line in statistics_table([fedit, smart]).splitlines() if line.startswith("| smartfed |"))
    assert row.split(" | ")[3].startswith("-0.7500 [") and row.split(" | ")[5].startswith("+50.0 [")  # by hand
    other_items = run("smartfed", "smartfed", 0, [(1.0, 2), (2.0, 3)], [1.0, 1.0])  # another item's tokens
    other_items.score_ids = {"mbpp": ["Mbpp/1", "Mbpp/3"]}
    row = next(line for line in statistics_table([fedit, other_items]).splitlines() if line.startswith("| smartfed |"))
    assert row.split(" | ")[3] == "-" and row.split(" | ")[5].rstrip(" |") == "-"
    assert row.split(" | ")[2].startswith("0.6000 [")  # its own mean stands: (1 + 2) / 5


def test_score_item_ids_are_read_where_every_item_has_one(tmp_path):
    """A scores.json item without an id (an older run) leaves the suite's ids unknown: paired by position."""
    from smartfed.fed.run_folder import RunFolder

    fedit = run("fedit", "fedit", 0, [(2.0, 2)], [1.0, 0.0])
    folder = tmp_path / "fedit"
    RunFolder(folder).create(fedit.config)
    (folder / "summary.json").write_text(fedit.summary.model_dump_json())
    items = lambda ids: [{"correct": True, **({"id": i} if i else {})} for i in ids]  # noqa: E731
    (folder / "scores.json").write_text(json.dumps({"suites": {"mbpp": {"items": items(["Mbpp/1", "Mbpp/2"])},
                                                               "humaneval": {"items": items(["HumanEval/0", None])}}}))
    read = RunResult.read(folder)
    assert read.score_ids == {"mbpp": ["Mbpp/1", "Mbpp/2"]} and read.score_items["humaneval"] == [1.0, 1.0]



@pytest.mark.parametrize("text, message", [("{", "expected JSON, found JSONDecodeError"), ("[1]", "expected a JSON object of suites, found list"),
                                           ('{"suites": {"mbpp": {"items": [{"correct": true}, {"id": "x"}]}}}',
                                            "suites.mbpp.items\\[1\\] expected an object with a boolean 'correct', found \"\\{'id': 'x'\\}\""),
                                           ('{"suites": {"mbpp": {"items": "all right"}}}', "suites.mbpp.items\\[0\\] expected an object")])
def test_a_malformed_scores_file_is_named(tmp_path, text, message):
    from smartfed.errors import SmartFedError
    from smartfed.fed.run_folder import RunFolder

    fedit = run("fedit", "fedit", 0, [(2.0, 2)], [1.0])
    folder = tmp_path / "fedit"
    RunFolder(folder).create(fedit.config)
    (folder / "summary.json").write_text(fedit.summary.model_dump_json())
    (folder / "scores.json").write_text(text)
    with pytest.raises(SmartFedError, match=message):
        RunResult.read(folder)
