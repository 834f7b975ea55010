"""The comparison sweep's configs: distinct runs, each method at its tuned rate."""

import json

import pytest

from smartfed.compare import METHOD_RUNS, comparison_configs, tuned_rates
from smartfed.config import load_config
from smartfed.errors import ConfigError


def test_no_two_method_runs_are_the_same_run(tmp_path):
    configs = comparison_configs("zh+math", str(tmp_path), list(METHOD_RUNS), [1.0], quick=True)
    flat = [tuple(sorted((k, str(v)) for k, v in c.flat().items() if k != "run.name")) for c in configs]
    assert len(set(flat)) == len(flat)


def test_every_standard_run_searches_lorahub_at_the_default_budget_and_a_set_wins(tmp_path):
    standard = {c.run.name: c.lorahub.search_budget for c in comparison_configs("zh+math", str(tmp_path), ["lorahub", "fedit"], [1.0], quick=False)}
    assert standard == {"lorahub": 12, "fedit": 12}  # fedit reads no lorahub key (resume and the report ignore it)
    quick = {c.run.name: c.lorahub.search_budget for c in comparison_configs("zh+math", str(tmp_path), ["lorahub", "fedit"], [1.0], quick=True)}
    assert quick == {"lorahub": 6, "fedit": 6}
    given = comparison_configs("zh+math", str(tmp_path), ["lorahub"], [1.0], quick=False, overrides=["lorahub.search_budget=40"])
    assert given[0].lorahub.search_budget == 40


def _record(tmp_path, composition="zh+math"):
    choice = {"smartfed": {"keys": {"run.method": "smartfed", "router.gate": "scaled", "training.lr": 0.03}},
              "fedit": {"keys": {"run.method": "fedit", "training.lr": 0.001}}, "lorahub": {"keys": {"run.method": "lorahub"}}}
    (tmp_path / "tuning.json").write_text(json.dumps({"composition": composition, "choice": choice}))
    return str(tmp_path)


def test_a_comparison_runs_each_method_at_its_tuned_rate(tmp_path):
    rates = tuned_rates(_record(tmp_path), "zh+math")
    assert rates == {"smartfed": 0.03, "fedit": 0.001}
    configs = comparison_configs("zh+math", str(tmp_path / "out"), ["smartfed", "smartfed-activation", "fedit", "lorahub"], [1.0],
                                 quick=True, rates=rates)
    default_lr = load_config().training.lr
    assert [(c.run.name, c.training.lr) for c in configs] == [("smartfed", 0.03), ("smartfed-activation", 0.03), ("fedit", 0.001),
                                                               ("lorahub", default_lr)]
    with pytest.raises(ConfigError, match=r"--set training.lr=...: expected a key the sweep does not set itself"):
        comparison_configs("zh+math", str(tmp_path / "out"), ["fedit"], [1.0], quick=True, overrides=["training.lr=0.1"], rates=rates)


def test_tuned_rates_refuse_a_broken_record_or_another_composition(tmp_path):
    with pytest.raises(ConfigError, match=r"tuning.json: expected a tuning on math\+code, found one on zh\+math"):
        tuned_rates(_record(tmp_path), "math+code")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tuning.json").write_text('{"composition": "zh+math", "choice": {"fedit": {"keys": {"training.lr": "fast"}}}}')
    with pytest.raises(ConfigError, match=r"bad/tuning.json: expected a tuning record"):
        tuned_rates(str(tmp_path / "bad"), "zh+math")


def test_each_method_trains_at_its_own_rate_unless_one_is_set(monkeypatch):
    from smartfed.methods import fresh_lora, get_method, routed

    used = []
    for module in (fresh_lora, routed):
        monkeypatch.setattr(module, "train_steps", lambda model, tok, ex, batches, lr, *rest: used.append(lr))
    for name in ("fedit", "smartfed", "module-router"):
        method = get_method(name)
        method.train(None, None, [], [], load_config(overrides=[f"run.method={name}"]), seed=0)
        method.train(None, None, [], [], load_config(overrides=[f"run.method={name}", "training.lr=0.02"]), seed=0)
        assert used[-2:] == [type(method).lr, 0.02]
    assert get_method("fedit").lr != get_method("smartfed").lr  # tuned apart (docs/tuning/zh+math)
