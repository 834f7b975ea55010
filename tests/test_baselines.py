"""Baselines: the module router against peft's deltas, FedIT / FFA-LoRA aggregation worked out by hand,
the LoRAHub search, the `local` method recomputed client by client, the energy model, and the quick
comparison (every method on each composition) end to end through the scripts a user runs."""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import make_config, tiny_pool
from smartfed import ExpertPool, attach_experts
from smartfed.compare import METHOD_RUNS
from smartfed.config import load_config
from smartfed.data.tokenize import collate, encode_for_training
from smartfed.experts import routed_layers, set_module_weights
from smartfed.fed.client import client_seed, client_update
from smartfed.fed.population import make_population
from smartfed.fed.simulation import run_simulation
from smartfed.fed.workspace import client_partitions, load_model_side
from smartfed.methods import get_method
from smartfed.methods.lorahub import minimize_weights, module_weights, search_module_weights
from test_exactness import peft_output

ROOT = Path(__file__).resolve().parents[1]


def test_module_router_is_a_per_token_softmax_mix_of_peft_deltas(block_adapters):
    base, folders, x = block_adapters
    pool = ExpertPool.from_adapters(folders, base)
    model = attach_experts(copy.deepcopy(base), pool, router="module", init_std=1.0)
    with torch.no_grad():
        y_base = base(x)
        deltas = [peft_output(base, f, x) - y_base for f in folders]  # (3, 5, 44) each
        got = model(x)
    slices = {"q": slice(0, 24), "k": slice(24, 32), "c": slice(32, 44)}
    expected = y_base.clone()
    for name, layer in routed_layers(model).items():
        logits = x.numpy() @ layer.router.weight.detach().numpy().T  # (3, 5, N_j), by hand
        gate = np.exp(logits - logits.max(-1, keepdims=True))
        gate /= gate.sum(-1, keepdims=True)
        for local, module_id in enumerate(layer.router.module_ids):
            expected[..., slices[name]] += torch.from_numpy(gate[..., local : local + 1]) * deltas[module_id][..., slices[name]]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def fed_setup(tiny_model_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    pool = tiny_pool(tiny_model_folder, root, 3)
    return {"model.name": tiny_model_folder, "pool.adapters": pool, "run.out_dir": str(root / "runs"), "data.composition": "zh+math",
            "federation.num_clients": 4, "federation.clients_per_round": 2, "federation.min_clients": 2, "federation.rounds": 2,
            "training.local_steps": 3, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4, "training.lr": 0.05}


@pytest.mark.parametrize("method", ["fedit", "ffa-lora"])
def test_fresh_lora_methods_average_what_they_train(fed_setup, method):
    config = make_config(fed_setup, {"run.name": f"avg-{method}", "run.method": method, "federation.rounds": 1})
    side, data = load_model_side(config), client_partitions(config)
    initial = get_method(method).state_dict(side.model)
    names = {n for n, _ in side.model.named_parameters() if "lora_" in n}
    trained_names = {n for n in names if method == "fedit" or ".lora_B." in n}
    assert initial.keys() == trained_names and all(".q_proj." in n or ".v_proj." in n or ".down_proj." in n for n in names)
    a_before = {n: p.detach().clone() for n, p in side.model.named_parameters() if ".lora_A." in n}
    results = [client_update(config, side.model, side.tokenizer, initial, {}, data[c], client_seed(config, 1, c)) for c in (0, 1)]
    a_after = {n: p.detach() for n, p in side.model.named_parameters() if ".lora_A." in n}
    assert all(torch.equal(a_before[n], a_after[n]) for n in a_before) == (method == "ffa-lora")
    run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    clients = [c["client"] for c in metrics[1]["clients"]]
    own = {c: client_update(config, side.model, side.tokenizer, initial, {}, data[c], client_seed(config, 1, c)) for c in clients}
    n = {c: own[c].num_examples for c in clients}
    final = load_file(config.run_dir / "checkpoints" / "round-0001.safetensors")
    for key in initial:  # example-weighted mean, by hand in float64
        expected = sum(n[c] * own[c].state[key].double().numpy() for c in clients) / sum(n.values())
        np.testing.assert_allclose(final[key].numpy(), expected, rtol=1e-5, atol=1e-7)
    assert results[0].metrics["tokens"] > 0 and results[0].metrics["cpu_s"] > 0


def test_lorahub_search_returns_its_best_weights_and_objective(fed_setup):
    config = make_config(fed_setup, {"run.name": "hub", "run.method": "lorahub"})
    ws = load_model_side(config)
    examples = client_partitions(config)[0][:4]
    start = module_weights(ws.model)
    assert start == pytest.approx([1 / 3] * 3)  # the static routers start uniform
    weights, objective, tokens = search_module_weights(ws.model, ws.tokenizer, examples, 2, 64, budget=6, seed=3)
    assert len(weights) == 3 and all(-1.5 <= w <= 1.5 for w in weights)
    assert module_weights(ws.model) == pytest.approx(weights)
    batches = [collate([encode_for_training(ws.tokenizer, e, 64) for e in examples[i : i + 2]], ws.tokenizer.pad_token_id) for i in (0, 2)]
    with torch.no_grad():
        loss = np.mean([ws.model(**b).loss.item() for b in batches])
    assert objective == pytest.approx(loss + 0.05 * np.abs(weights).mean(), rel=1e-5)
    assert tokens == 7 * sum(int(b["attention_mask"].sum()) for b in batches)  # 6 evaluations + the final one
    set_module_weights(ws.model, start)  # the same start and seed: the same search
    again = search_module_weights(ws.model, ws.tokenizer, examples, 2, 64, budget=6, seed=3)
    assert again[0] == pytest.approx(weights)


def test_lorahub_needs_more_evaluations_than_modules_to_search():
    # why LoRAHub searches 12 evaluations a round by default for 4 modules (config.LorahubSection, README):
    # a quadratic whose optimum is 0.05 from the start in every weight
    tried = []

    def quadratic(w):
        tried.append(np.asarray(w).copy())
        return float(np.sum((np.asarray(w) - 0.05) ** 2))

    with pytest.warns(UserWarning, match=r"lorahub.search_budget=4 for 4 modules: expected at least 6"):
        at_4 = minimize_weights(quadratic, np.zeros(4), budget=4, seed=0)
    steps = [t for t in tried if np.any(t != 0)]
    assert np.all(at_4 == 0) and len(steps) == 3 and all(sorted(t) == [0, 0, 0, 1] for t in steps)  # the 4th never moves
    assert all(t[3] == 0 for t in tried)
    tried.clear()
    at_12 = minimize_weights(quadratic, np.zeros(4), budget=12, seed=0)
    assert np.all(np.abs(at_12 - 0.05) <= 0.03) and len(tried) == 12
    assert np.array_equal(minimize_weights(quadratic, np.zeros(4), budget=12, seed=1), at_12)  # the seed changes nothing


def test_local_clients_train_alone_and_report_the_mean(fed_setup):
    config = make_config(fed_setup, {"run.name": "local", "run.method": "local", "eeqa.enabled": False})
    summary = run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert summary.cumulative_bytes_up == summary.cumulative_bytes_down == 0
    assert [len(m["clients"]) for m in metrics[1:]] == [4, 4]
    assert metrics[-1]["heldout_loss"] == pytest.approx(np.mean(metrics[-1]["heldout_loss_per_client"]))
    side = load_model_side(config)  # client 2 recomputed on its own: the same chain of client updates
    state, quotas = get_method("local").state_dict(side.model), {}
    for round_ in (1, 2):
        state = client_update(config, side.model, side.tokenizer, state, quotas, client_partitions(config)[2],
                              client_seed(config, round_, 2)).state
    saved = load_file(config.run_dir / "checkpoints" / "client-0002.safetensors")  # what `smartfed eval --router-state` loads
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)
    last = load_file(config.run_dir / "checkpoints" / "round-0002.safetensors")  # what a resume reads
    assert all(torch.equal(last[f"client2/{k}"], state[k]) for k in state)
    # energy: every client's CPU seconds times the stated watts (nothing sent)
    cpu = sum(c["cpu_s"] for m in metrics[1:] for c in m["clients"])
    assert summary.energy_compute_j == pytest.approx(cpu * config.energy.cpu_watts, rel=1e-3) and summary.energy_radio_j == 0


def test_energy_counts_cpu_time_and_bytes_at_the_stated_rates(fed_setup):
    config = make_config(fed_setup, {"run.name": "energy", "run.method": "smartfed", "energy.cpu_watts": 3.0,
                                     "energy.uplink_j_per_byte": 2e-6, "energy.downlink_j_per_byte": 5e-7})
    summary = run_simulation(config, log=lambda *_: None)
    clients = [c for line in (config.run_dir / "metrics.jsonl").read_text().splitlines() for c in json.loads(line)["clients"]]
    radio = sum(c["bytes_up"] * 2e-6 + c["bytes_down"] * 5e-7 for c in clients)
    compute = sum(c["cpu_s"] * 3.0 for c in clients)
    assert summary.energy_radio_j == pytest.approx(radio, rel=1e-3) and summary.energy_compute_j == pytest.approx(compute, rel=1e-3)
    assert summary.energy_radio_j > 0 and summary.energy_compute_j > 0


@pytest.mark.slow
@pytest.mark.parametrize("composition", ["zh+math", "zh+code", "math+code"])
def test_quick_comparison_script_runs_every_method_and_reports_ratios(fed_setup, tmp_path, composition):
    """The composition script a user runs, in --quick mode, on the tiny model and pool."""
    out = tmp_path / composition
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = ROOT / "experiments" / f"{composition}.sh"
    pool = "[" + ",".join(f'"{p}"' for p in fed_setup["pool.adapters"]) + "]"
    cmd = [str(script), "--quick", "--seeds", "0", "--out", str(out), "--set", f"model.name={fed_setup['model.name']}",
           "--set", f"pool.adapters={pool}"]
    # every method run once is enough; the other two run the core comparison
    cmd += ["--methods", ",".join(METHOD_RUNS) if composition == "zh+math" else "smartfed-activation,fedit,local"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "report" / "report.md").read_text()
    runs = {d.name: json.loads((d / "summary.json").read_text()) for d in out.iterdir() if (d / "summary.json").is_file()}
    expected_runs = len(METHOD_RUNS) if composition == "zh+math" else 3
    assert len(runs) == expected_runs and all(f"| {name} |" in report for name in runs)
    fedit = runs["fedit"]
    for name, s in runs.items():
        assert set(s["scores"]) == set({"zh+math": ("mgsm-zh", "ape210k"), "zh+code": ("humaneval", "mbpp"),
                                        "math+code": ("gsm-hard-pal", "mbpp")}[composition])
        if name in ("fedit", "local"):
            continue
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} | fedit |"))
        sent = s["cumulative_bytes_up"] + s["cumulative_bytes_down"]
        if not sent:  # arrow: trains and sends nothing
            assert "| nothing sent |" in row
            continue
        ratio = (fedit["cumulative_bytes_up"] + fedit["cumulative_bytes_down"]) / sent
        energy = (fedit["energy_compute_j"] + fedit["energy_radio_j"]) / (s["energy_compute_j"] + s["energy_radio_j"])
        assert f"| {ratio:.2f}x |" in row and f"| {energy:.2f}x |" in row
    for png in ("heldout_loss.png", "loss_vs_bytes.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "fedit" / "scores.json").read_text())["code_sandbox_isolation"]  # kept with the scores
    if composition == "zh+math":  # `smartfed` and `fedit` ran: the headline figures are checked
        assert f"| {composition} | 1 | ~31x less communication |" in report


@pytest.mark.slow
def test_quick_data_fraction_sweep_plots_score_and_loss_against_fraction(fed_setup, tmp_path):
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    pool = "[" + ",".join(f'"{p}"' for p in fed_setup["pool.adapters"]) + "]"
    # no composition given: the script defaults to zh+math (a first argument starting with -- is a flag)
    cmd = [str(ROOT / "experiments" / "data-fraction.sh"), "--quick", "--seeds", "0", "--out", str(tmp_path / "sweep"),
           "--set", f"model.name={fed_setup['model.name']}", "--set", f"pool.adapters={pool}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = sorted(d.name for d in (tmp_path / "sweep").iterdir() if (d / "summary.json").is_file())
    assert finished == sorted(f"{m}{s}" for m in ("smartfed", "fedit") for s in ("-frac0.1", ""))
    for name, fraction in (("smartfed-frac0.1", 0.1), ("fedit-frac0.1", 0.1), ("fedit", 1.0)):
        config = load_config(str(tmp_path / "sweep" / name / "config.toml"))
        assert config.data.fraction == fraction
        data = client_partitions(config)  # each client keeps ceil(fraction * its share)
        full = client_partitions(config.with_values({"data.fraction": 1.0}))
        assert [len(d) for d in data] == [max(1, math.ceil(fraction * len(f))) for f in full]
    report = tmp_path / "sweep" / "report-data-fraction"
    assert "| smartfed-frac0.1 | fedit-frac0.1 |" in (report / "report.md").read_text()
    assert (report / "data_fraction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_table_is_computed_from_the_runs():
    from smartfed.fed.records import ClientRecord, RoundRecord, Summary
    from smartfed.report.runs import RunResult, ratio_table, summary_table

    def result(name, method, losses, up, down, energy, scores, tokens_per_round):
        metrics = [RoundRecord(round=r, heldout_loss=loss, clients=[ClientRecord(client=0, tokens=t) for t in tokens_per_round] if r else [])
                   for r, loss in enumerate(losses)]
        summary = Summary(method=method, rounds=len(losses) - 1, initial_heldout_loss=losses[0], final_heldout_loss=losses[-1],
                          cumulative_bytes_up=up, cumulative_bytes_down=down, state_bytes=0, pool_bytes_per_client_once=0,
                          energy_compute_j=energy, energy_radio_j=0.0, client_cpu_s=energy / 7.5, wall_s=1.0, final_checkpoint="",
                          scores=scores)
        return RunResult(name, load_config(overrides=[f"run.method={method}"]), metrics, summary)

    fedit = result("fedit", "fedit", [3.0, 2.8, 2.6, 2.5, 2.4], 400, 400, 100.0, {"a": 0.2, "b": 0.4}, [100, 150])
    fast = result("fast", "smartfed", [3.0, 2.5, 2.3, 2.2, 2.1], 10, 30, 40.0, {"a": 0.3, "b": 0.4}, [125])
    slow = result("slow", "lorahub", [3.0, 2.9, 2.9, 2.8, 2.7], 8, 8, 200.0, {"a": 0.0, "b": 0.0}, [1000, 1500])
    table = ratio_table([fedit, fast, slow])
    # fast reaches FedIT's final 2.4 in round 2 (FedIT: round 4) -> 2.00x; 800 / 40 bytes; 100 / 40 J;
    # compute: FedIT trains 4 x 250 tokens = 2000 passes, fast 4 x 125 trained = 1000, slow 4 x 2500 forward only = 10000
    assert "| fast | fedit | +5.0 | -0.3000 | 2.00x | 20.00x | 2.50x | 2.00x |" in table
    assert "| slow | fedit | -30.0 | +0.3000 | not reached | 50.00x | 0.50x | 0.20x |" in table
    assert "| fast | smartfed | linear | on | 1 | 30.0 | 40.0 | 2.1000 (48) | 3.0000 -> 2.1000 | 2 | 0.00 | 0.00 | 0.04 | 5 | 1.0 | 1 | - | auto |" \
        in summary_table([fedit, fast, slow])
    # a run on another device: its joules (client CPU seconds x watts) are not compared with FedIT's
    fast.config = fast.config.with_values({"model.device": "cuda"})
    assert "| fast | fedit | +5.0 | -0.3000 | 2.00x | 20.00x | - (cuda vs auto) | 2.00x |" in ratio_table([fedit, fast, slow])
    assert summary_table([fedit, fast]).splitlines()[-1].endswith("| cuda |")
    # where both recorded the device they resolved, that decides: "auto" on a GPU is not "auto" on a CPU,
    # a run resumed on another device compares with none, and "cpu" is "auto" resolved to the CPU
    fast.config = fast.config.with_values({"model.device": "auto"})
    fedit.ran_on, fast.ran_on = ("cpu",), ("cuda:0 (NVIDIA H200)",)
    assert "| fast | fedit | +5.0 | -0.3000 | 2.00x | 20.00x | - (cuda:0 (NVIDIA H200) vs cpu) | 2.00x |" in ratio_table([fedit, fast])
    assert summary_table([fedit, fast]).splitlines()[-1].endswith("| cuda:0 (NVIDIA H200) |")
    fast.ran_on = ("cuda:0 (NVIDIA H200)", "cpu")
    assert "- (cuda:0 (NVIDIA H200), then cpu vs cpu)" in ratio_table([fedit, fast])
    fast.ran_on, fast.config = ("cpu",), fast.config.with_values({"model.device": "cpu"})
    assert "| fast | fedit | +5.0 | -0.3000 | 2.00x | 20.00x | 2.50x | 2.00x |" in ratio_table([fedit, fast])
    # an older run recorded none: it compares only where it asked for that kind of device by name
    fedit.ran_on = ()
    assert "- (cpu vs auto)" in ratio_table([fedit, fast])
    fedit.config = fedit.config.with_values({"model.device": "cpu"})
    assert "| fast | fedit | +5.0 | -0.3000 | 2.00x | 20.00x | 2.50x | 2.00x |" in ratio_table([fedit, fast])
    fast.ran_on = ("cuda:0 (NVIDIA H200)",)
    assert "- (cuda:0 (NVIDIA H200) vs cpu)" in ratio_table([fedit, fast])


def test_report_names_the_file_and_keys_of_a_run_without_energy(tmp_path):
    from smartfed.errors import SmartFedError
    from smartfed.fed.run_folder import RunFolder
    from smartfed.report.runs import RunResult

    run = RunFolder(tmp_path / "old")
    run.create(load_config(overrides=["run.name=old"]))
    before_energy = {"method": "smartfed", "rounds": 1, "initial_heldout_loss": 2.0, "final_heldout_loss": 1.9, "cumulative_bytes_up": 1,
                     "cumulative_bytes_down": 2, "state_bytes": 1, "pool_bytes_per_client_once": 0, "client_cpu_s": 1.0, "wall_s": 1.0,
                     "final_checkpoint": "checkpoints/round-0001.safetensors"}
    (tmp_path / "old" / "summary.json").write_text(json.dumps(before_energy))
    with pytest.raises(SmartFedError, match=r"old/summary.json: .*missing energy_compute_j, energy_radio_j"):
        RunResult.read(tmp_path / "old")


def test_arrow_equals_peft_create_arrow_model(tmp_path, monkeypatch):
    """Our whole-module Arrow router against peft's own Arrow on a pool it accepts (same rank and targets).

    We take each prototype as the exact top right singular vector of B A; peft approximates it with
    15 power-iteration steps, which here leaves one prototype visibly off, so peft runs to convergence."""
    from peft import ArrowConfig, create_arrow_model
    from peft.tuners.lora.arrow import ArrowLoraLinearLayer

    monkeypatch.setattr(ArrowLoraLinearLayer.top_right_singular_vec_from_BA, "__defaults__", (3000, 1e-12))

    from conftest import make_adapter, tiny_llama

    base = tiny_llama()
    folders = [str(make_adapter(base, tmp_path / f"m{n}", n, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
               for n in range(3)]
    inputs = {"input_ids": torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(4))}
    pool = ExpertPool.from_adapters(folders, base)
    for top_k, temperature in ((2, 1.0), (1, 1.0), (3, 0.5)):
        theirs = create_arrow_model(copy.deepcopy(base), folders, ArrowConfig(top_k=top_k, router_temperature=temperature, rng_seed=0))
        ours = attach_experts(copy.deepcopy(base), pool, router="module-arrow", top_k=None, module_top_k=top_k, temperature=temperature)
        with torch.no_grad():
            expected, got = theirs(**inputs).logits, ours(**inputs).logits
        assert not torch.allclose(expected, base(**inputs).logits, atol=1e-3)  # the modules change the output
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_arrow_run_trains_and_sends_nothing(fed_setup):
    config = make_config(fed_setup, {"run.name": "arrow", "run.method": "arrow", "arrow.top_k": 2})
    summary = run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0] and summary.rounds == 0
    assert summary.cumulative_bytes_up == summary.cumulative_bytes_down == 0 and summary.final_heldout_loss == metrics[0]["heldout_loss"]


def test_flora_folds_the_exact_stacked_aggregate_into_the_base(fed_setup):
    """After round 1 every adapted base weight has moved by sum_k p_k s B_k A_k of the clients' own LoRAs
    (recomputed client by client), the state restarts fresh, and downloads grow with unfolded rounds."""
    config = make_config(fed_setup, {"run.name": "flora", "run.method": "flora", "federation.rounds": 2})
    side, data = load_model_side(config), client_partitions(config)
    start = get_method("flora").state_dict(side.model)
    before = {n: p.detach().clone() for n, p in side.model.named_parameters() if n.endswith("base_layer.weight")}
    run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    clients = [c["client"] for c in metrics[1]["clients"]]
    own = {c: client_update(config, side.model, side.tokenizer, start, {}, data[c], client_seed(config, 1, c)) for c in clients}
    total = sum(own[c].num_examples for c in clients)
    after_round_1 = load_model_side(config)  # a fresh model, with round 1's checkpoint folded in by a resume-style restore
    population = make_population(config, get_method("flora"), after_round_1.model, start, {}, {})
    with safe_open(config.run_dir / "checkpoints" / "round-0001.safetensors", framework="pt") as f:
        population.restore({k: f.get_tensor(k) for k in f.keys()}, f.metadata(), None)
    scaling = config.lora.alpha / config.lora.rank
    for name, w0 in before.items():
        module = name.removesuffix(".base_layer.weight")
        expected = w0.double() + sum(own[c].num_examples / total * scaling * (own[c].state[f"{module}.lora_B.default.weight"].double()
                                     @ own[c].state[f"{module}.lora_A.default.weight"].double()) for c in clients)
        got = dict(after_round_1.model.named_parameters())[name].double()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    final = load_file(config.run_dir / "checkpoints" / "round-0002.safetensors")
    assert all(torch.equal(final[k], start[k]) for k in start)  # the next round starts from the fresh LoRA again
    # round 2: every client also fetches round 1's stack (K r rank, more than the fresh LoRA itself)
    round_1, round_2 = ({c["bytes_down"] for c in metrics[r]["clients"]} for r in (1, 2))
    assert len(round_1) == len(round_2) == 1 and next(iter(round_2)) > 2 * next(iter(round_1))
