"""The headline-claims table on runs built by hand, each verdict worked out from the rules in report/claims.py."""

import pytest

from smartfed.config import load_config
from smartfed.errors import SmartFedError
from smartfed.fed.records import ClientRecord, RoundRecord, Summary
from smartfed.report.claims import claims_table, composition_claims
from smartfed.report.runs import RunResult


def run(name, method, seed, losses, items=((1.0, 1), (1.0, 1)), scores=None, sent=100, joules=10.0, fraction=1.0):
    """A run whose held-out loss per round is `losses` (round 0 first); `items` are its last round's per-item cells."""
    metrics = [RoundRecord(round=r, heldout_loss=loss, heldout_items=list(items) if r == len(losses) - 1 else None,
                           clients=[ClientRecord(client=0, tokens=1)] if r else []) for r, loss in enumerate(losses)]
    summary = Summary(method=method, rounds=len(losses) - 1, initial_heldout_loss=losses[0], final_heldout_loss=losses[-1],
                      cumulative_bytes_up=sent // 2, cumulative_bytes_down=sent - sent // 2, state_bytes=1, pool_bytes_per_client_once=0,
                      energy_compute_j=joules, energy_radio_j=0.0, client_cpu_s=1.0, wall_s=1.0, final_checkpoint="")
    config = load_config(overrides=[f"run.method={method}", f"run.seed={seed}", f"run.name={name}", f"data.fraction={fraction}"])
    return RunResult(name, config, metrics, summary, scores or {})


def _named(base, seed):
    return base if seed == 0 else f"{base}-seed{seed}"


def verdicts(results):
    return {claim: (verdict, evidence) for claim, _, verdict, evidence in composition_claims(results, "zh+math")}


def test_every_claim_holds_where_the_runs_are_far_better_than_claimed():
    fedit = [run(_named("fedit", s), "fedit", s, [3.0, 2.0, 1.5, 1.0], scores={"mbpp": [0.0, 0.0], "mgsm-zh": [0.0, 1.0, 0.0, 0.0]},
                 sent=3200, joules=40.0) for s in (0, 1)]
    smart = [run(_named("smartfed", s), "smartfed", s, [3.0, 0.9, 0.8, 0.7], scores={"mbpp": [1.0, 1.0], "mgsm-zh": [1.0, 1.0, 1.0, 1.0]},
                 sent=100, joules=10.0) for s in (0, 1)]
    small = [run(_named("smartfed-frac0.1", s), "smartfed", s, [3.0, 1.0], scores={"mbpp": [1.0, 0.0], "mgsm-zh": [1.0, 1.0, 1.0, 1.0]},
                 fraction=0.1) for s in (0, 1)]
    got = verdicts(fedit + smart + small)
    # by hand: FedIT's mean score (0/2 + 1/4) / 2 = 12.5 %, SmartFed's 100 %: +87.5 pp; no item favours FedIT
    verdict, evidence = got["+10.21 pp accuracy"]
    assert verdict == "holds" and evidence.startswith("+87.5 pp [") and evidence.endswith(", +100.0]")
    # FedIT reaches its final 1.0 in round 3, SmartFed in round 1: 3.00x >= 0.75 x 3.95 = 2.96
    assert got["3.95x faster convergence"] == ("holds", "FedIT rounds / rounds per seed: 3.00x, 3.00x")
    assert got["~31x less communication"] == ("holds", "FedIT bytes / bytes per seed: 32.00x, 32.00x")
    assert got["~3.6x less energy"] == ("holds", "FedIT J / J per seed: 4.00x, 4.00x")
    # 10% data: (1/2 + 4/4) / 2 = 75 % against 12.5 %: +62.5 pp
    verdict, evidence = got["10% data beats FedIT on all"]
    assert verdict == "holds" and evidence.startswith("score +62.5 pp [")


def test_claims_fail_or_stay_open_where_the_evidence_says_so():
    fedit = [run(_named("fedit", s), "fedit", s, [3.0, 2.0, 1.5, 1.2, 1.0], items=[(2.0, 2), (2.0, 2)], scores={"mbpp": [1.0, 0.0]},
                 sent=100) for s in (0, 1)]
    smart = [run("smartfed", "smartfed", 0, [3.0, 0.9], scores={"mbpp": [1.0, 0.0]}, sent=50, joules=2.0),
             run("smartfed-seed1", "smartfed", 1, [3.0, 2.0], scores={"mbpp": [1.0, 0.0]}, sent=50, joules=20.0)]
    small = [run(_named("smartfed-frac0.1", s), "smartfed", s, [3.0, 2.5], items=[(3.0, 2), (3.0, 2)], fraction=0.1) for s in (0, 1)]
    got = verdicts(fedit + smart + small)
    assert got["+10.21 pp accuracy"] == ("does not hold", "+0.0 pp [+0.0, +0.0]")  # the same items right
    assert got["3.95x faster convergence"] == ("cannot tell", "FedIT rounds / rounds per seed: 4.00x, not reached")
    assert got["~31x less communication"] == ("does not hold", "FedIT bytes / bytes per seed: 2.00x, 2.00x")
    assert got["~3.6x less energy"] == ("cannot tell", "FedIT J / J per seed: 5.00x, 0.50x")  # FedIT's 10 J by default
    # no scores on the 10% runs: held-out loss 6/4 = 1.5 against 4/4 = 1.0, worse on every draw
    assert got["10% data beats FedIT on all"] == ("does not hold", "held-out loss +0.5000 [+0.5000, +0.5000], 2 seeds")


def test_energy_is_compared_only_where_both_runs_asked_for_the_same_device():
    """Joules count client CPU seconds: a GPU run's are no measure of its energy against a CPU run's."""
    fedit = [run(_named("fedit", s), "fedit", s, [3.0, 1.0], joules=40.0) for s in (0, 1)]
    smart = [run("smartfed", "smartfed", 0, [3.0, 1.0], joules=10.0), run("smartfed-seed1", "smartfed", 1, [3.0, 1.0], joules=1.0)]
    smart[1].config = smart[1].config.with_values({"model.device": "cuda"})
    rows = {claim: (seeds, verdict, evidence) for claim, seeds, verdict, evidence in composition_claims(fedit + smart, "zh+math")}
    assert rows["~3.6x less energy"] == (1, "holds", "FedIT J / J per seed: 4.00x")  # seed 0 only; seed 1 would say 40.00x
    assert rows["~31x less communication"][0] == 2  # bytes do not depend on the device
    smart[0].config = smart[0].config.with_values({"model.device": "cuda"})
    claims = [claim for claim, *_ in composition_claims(fedit + smart, "zh+math")]
    assert "~3.6x less energy" not in claims and "~31x less communication" in claims


def test_the_table_has_the_claims_the_runs_can_decide():
    fedit = run("fedit", "fedit", 0, [3.0, 1.0])
    assert claims_table([fedit]) is None
    assert claims_table([fedit, run("smartfed-seed1", "smartfed", 1, [3.0, 1.0])]) is None  # no common seed
    table = claims_table([fedit, run("smartfed", "smartfed", 0, [3.0, 1.0])])
    assert "| zh+math | 1 | +10.21 pp accuracy | **cannot tell** (provisional: 1 of 3 seeds) | no benchmark scores on the same seeds and items |" in table
    assert "10% data" not in table  # no `smartfed-frac0.1` run: its sweep's report has the row
    communication = next(line for line in table.splitlines() if "communication" in line)
    assert "provisional" not in communication  # bytes sent are the same at every seed
    three = [run(_named(name, s), name, s, [3.0, 1.0]) for name in ("fedit", "smartfed") for s in (0, 1, 2)]
    assert "| zh+math | 3 | +10.21 pp accuracy | **cannot tell** | no benchmark" in claims_table(three)  # not provisional


def test_the_10_percent_claim_pairs_fedit_on_all_the_data_at_the_same_scale():
    """The data-fraction sweep trains more (3 clients x 2 steps) than the comparison: its `fedit` is the
    10% runs' reference, and the comparison's `fedit` (same name, seed and fraction) is not, nor the other way round."""
    comparison_fedit = run("fedit", "fedit", 0, [3.0, 2.0, 1.0], items=[(4.0, 2), (4.0, 2)])  # 2.0 a token
    smart = run("smartfed", "smartfed", 0, [3.0, 1.0, 0.9], items=[(3.0, 2), (3.0, 2)])  # 1.5
    sweep_fedit = run("fedit", "fedit", 0, [3.0, 1.0, 0.5], items=[(1.0, 2), (1.0, 2)])  # 0.5
    small = run("smartfed-frac0.1", "smartfed", 0, [3.0, 1.0], items=[(2.0, 2), (2.0, 2)], fraction=0.1)  # 1.0
    sweep_fedit, small = (RunResult(r.name, r.config.with_values({"federation.clients_per_round": 3, "training.local_steps": 2}),
                                    r.metrics, r.summary, {}) for r in (sweep_fedit, small))
    sweep_fedit, comparison_fedit = (RunResult(r.name, r.config.with_values({"training.lr": 0.001, "model.device": "cpu"}),
                                               r.metrics, r.summary, {}) for r in (sweep_fedit, comparison_fedit))  # not scale
    for order in ([comparison_fedit, smart, sweep_fedit, small], [sweep_fedit, small, comparison_fedit, smart]):
        rows = {claim: (seeds, verdict, evidence) for claim, seeds, verdict, evidence in composition_claims(order, "zh+math")}
        # 10% against the sweep's FedIT: 1.0 - 0.5 (against the comparison's it would be 1.0 - 2.0, and hold)
        assert rows["10% data beats FedIT on all"] == (1, "does not hold", "held-out loss +0.5000 [+0.5000, +0.5000], 1 seed")
        # the comparison's SmartFed reaches its FedIT's final 1.0 in round 1, FedIT in round 2 (the sweep's 0.5: never)
        assert rows["3.95x faster convergence"] == (1, "does not hold", "FedIT rounds / rounds per seed: 2.00x")
    assert claims_table([sweep_fedit, small]).splitlines()[2:] == [
        "| zh+math | 1 | 10% data beats FedIT on all | **does not hold** (provisional: 1 of 3 seeds) | held-out loss +0.5000 [+0.5000, +0.5000], 1 seed |"]


def test_convergence_cannot_be_told_from_runs_not_evaluated_every_round():
    fedit = run("fedit", "fedit", 0, [3.0, 2.0, 1.8, 1.5, 1.0])
    smart = run("smartfed", "smartfed", 0, [3.0, 0.5, 0.4])
    assert verdicts([fedit, smart])["3.95x faster convergence"] == ("holds", "FedIT rounds / rounds per seed: 4.00x")
    sparse = RunResult(smart.name, smart.config.with_values({"eval.every": 2}), smart.metrics, smart.summary, {})
    assert verdicts([fedit, sparse])["3.95x faster convergence"] == ("cannot tell", "held-out loss not evaluated every round")


def test_convergence_cannot_be_told_where_untrained_smartfed_starts_below_fedits_final_loss():
    """A head start is no faster training: SmartFed at round 0 (its untrained routing) already at FedIT's final
    loss "reaches" it in round 1, 4x before FedIT, which would hold without the round-0 rule."""
    fedit = [run(_named("fedit", s), "fedit", s, [3.0, 2.0, 1.8, 1.5, 1.0]) for s in (0, 1)]
    ahead = run("smartfed", "smartfed", 0, [1.0, 0.9])  # round 0 at FedIT's final 1.0
    behind = run("smartfed-seed1", "smartfed", 1, [3.0, 0.9])
    assert verdicts(fedit + [ahead, behind])["3.95x faster convergence"] == (
        "cannot tell", "FedIT rounds / rounds per seed: 4.00x, 4.00x; untrained (round 0) SmartFed is already at or "
                       "below FedIT's final loss (seed 0)")
    assert verdicts(fedit[1:] + [behind])["3.95x faster convergence"] == ("holds", "FedIT rounds / rounds per seed: 4.00x")


def test_two_runs_of_one_claim_and_seed_are_named_not_picked():
    fedit = run("fedit", "fedit", 0, [3.0, 1.0])
    smart = [run("smartfed", "smartfed", 0, [3.0, 0.9]), run("smartfed-seed0", "smartfed", 0, [3.0, 2.0])]
    with pytest.raises(SmartFedError, match="two 'smartfed' runs of zh\\+math at seed 0 and the same scale"):
        verdicts([fedit, *smart])
