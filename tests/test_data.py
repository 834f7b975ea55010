"""Dataset loaders, compositions and partitions on the real files in ../shared/data."""

import json
from collections import Counter

import pytest

from smartfed.eval.suites import SUITES
from smartfed.data import COMPOSITIONS, SOURCES, DataError, chat_prompt, composition_splits, heldout_split, load_source, task_prompt
from smartfed.data.partition import partition

EXPECTED_ROWS = {
    "gsm8k-train": 7473, "gsm8k-test": 1000, "gsm-hard": 1000, "mgsm-en": 250, "mgsm-zh": 250, "svamp": 1000,
    "asdiv": 2096, "ape210k-train": 5000, "ape210k-test": 5000, "mbpp-test": 500, "mbpp-train": 374, "humaneval": 164,
    "codealpaca": 2015, "alpaca-zh": 1000, "alpaca-en": 999, "belle-eval-zh": 631,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_each_source_loads_with_stable_unique_ids(name):
    first, second = load_source(name), load_source(name)
    assert len(first) == EXPECTED_ROWS[name]
    assert [e.id for e in first] == [e.id for e in second]
    assert len({e.id for e in first}) == len(first)
    assert all(e.prompt.strip() and e.target.strip() for e in first)
    if first[0].skill == "math":
        assert all(e.answer is not None for e in first)
    if first[0].skill == "code" and name != "codealpaca":
        assert all(e.tests for e in first)


def test_known_values():
    gsm = load_source("gsm8k-train")[0]
    assert gsm.answer == "72" and gsm.target.endswith("The answer is 72.") and "<<" not in gsm.target
    assert load_source("mgsm-zh")[0].answer == "18" and load_source("mgsm-zh")[0].language == "zh"
    assert load_source("ape210k-train")[0].answer == "45"
    assert load_source("svamp")[0].answer == "51"


def test_packaged_sources_need_no_data_folder(tmp_path):
    from_package = load_source("humaneval-pkg", tmp_path)  # tmp_path has no data: the package carries it
    assert [e.tests for e in from_package] == [e.tests for e in load_source("humaneval")]
    a, b = load_source("gsm-symbolic", tmp_path), load_source("gsm-symbolic", tmp_path)
    assert len(a) == 500 and [e.prompt for e in a] == [e.prompt for e in b] and a[0].answer


def test_pal_programs_reproduce_the_reference_answers():
    pal = load_source("gsm8k-pal-train")
    assert len(pal) > 0.8 * 7473
    scope: dict = {}
    exec(pal[0].target.removeprefix("```python\n").removesuffix("\n```"), {}, scope)
    assert scope["solution"]() == 72
    assert "    # Natalia sold 48/2 = 24 clips in May." in pal[0].target  # the prose keeps its result once, not "2424"
    assert "Write a Python function `solution()`" in task_prompt(pal[0])


def test_bad_input_names_file_line_and_known_names(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown dataset 'gsm9k': expected one of .*gsm8k-train"):
        load_source("gsm9k")
    with pytest.raises(DataError, match=f"{tmp_path}/gsm8k/train.jsonl: expected a data file, found none"):
        load_source("gsm8k-train", tmp_path)
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{broken\n")
    with pytest.raises(DataError, match=r"train.jsonl:2: not valid JSON"):
        load_source("gsm8k-train", tmp_path)
    (tmp_path / "gsm8k" / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: key 'answer' expected a '#### <number>' line"):
        load_source("gsm8k-train", tmp_path)
    (tmp_path / "gsm8k" / "train.jsonl").write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: expected key 'question', found \['query'\]"):
        load_source("gsm8k-train", tmp_path)
    monkeypatch.setenv("SMARTFED_DATA", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path)):
        load_source("svamp")


@pytest.mark.slow
def test_chat_template_is_used(smollm):
    _, tokenizer = smollm
    text = chat_prompt(tokenizer, "What is 2+3?")
    assert text.startswith("<|im_start|>") and text.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_compositions_never_share_items_between_train_and_heldout(name):
    train, dev, heldout = composition_splits(name)
    for a, b in ((train, heldout), (train, dev), (dev, heldout)):
        assert {e.id for e in a}.isdisjoint({e.id for e in b})
        assert {e.prompt for e in a}.isdisjoint({e.prompt for e in b})
    total = len(train) + len(dev) + len(heldout)
    assert 0.07 * total < len(heldout) < 0.13 * total and 0.03 * total < len(dev) < 0.07 * total
    assert [e.id for e in composition_splits(name).heldout] == [e.id for e in heldout] == [e.id for e in heldout_split(name)]
    benchmark_prompts = {e.prompt for suite in COMPOSITIONS[name].eval_suites for e in load_source(SUITES[suite].source)}
    assert not benchmark_prompts & {e.prompt for e in dev}, "a dev item is also a benchmark item"


@pytest.mark.parametrize("name", ["math+code", "zh+code"])
def test_the_first_scored_items_hold_every_source_in_turn(name):
    _, dev, heldout = composition_splits(name)
    for split in (dev, heldout):
        sources = COMPOSITIONS[name].train_sources
        assert [e.source for e in split[:2 * len(sources)]] == list(sources) * 2  # one of each, in turn
        for source in sources:  # each source keeps its own order
            ids = [e.id for e in split if e.source == source]
            assert ids == [e.id for e in load_source(source) if e.id in set(ids)]


def test_partitions_cover_everything_once_and_skew_as_asked():
    train = composition_splits("zh+code").train
    iid = partition(train, "iid", 10)
    assert sum(map(len, iid)) == len(train) and max(map(len, iid)) - min(map(len, iid)) <= 1
    skewed = partition(train, "dirichlet:source:0.1", 10, seed=0)
    assert sorted(e.id for p in skewed for e in p) == sorted(e.id for e in train)
    shares = [Counter(e.source for e in p)["alpaca-zh"] / max(len(p), 1) for p in skewed]
    assert max(shares) - min(shares) > 0.5  # clients differ a lot in what they hold
    assert partition(train, "dirichlet:source:0.1", 10, seed=0)[3] == skewed[3]  # seeded
    natural = partition(train, "natural:source", 2)
    assert sorted({p[0].source for p in natural}) == ["alpaca-zh", "codealpaca"]
    assert all(len({e.source for e in p}) == 1 for p in natural)
    with pytest.raises(DataError, match="partition scheme expected iid"):
        partition(train, "dirichlet:colour:1", 10)
    with pytest.raises(DataError, match="makes 2 clients, expected num_clients=5"):
        partition(train, "natural:source", 5)


def test_hub_datasets_load_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, config, split):
        calls.append((path, config, split))
        if path == "nobody/none":
            raise FileNotFoundError("no such dataset on the hub")
        columns = {"question": ["1+1?", "2+2?"], "answer": ["2", "4"]} if path == "openai/gsm8k" else {"foo": ["x"]}
        return datasets.Dataset.from_dict(columns)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = load_source("hf:openai/gsm8k:main@test")
    assert calls[0] == ("openai/gsm8k", "main", "test")
    assert [(e.id, e.prompt, e.target) for e in examples] == [("hf:openai/gsm8k:main@test/0", "1+1?", "2"), ("hf:openai/gsm8k:main@test/1", "2+2?", "4")]
    with pytest.raises(DataError, match=r"found columns \['foo'\]"):
        load_source("hf:some/other")
    with pytest.raises(DataError, match="no such dataset on the hub"):
        load_source("hf:nobody/none")
