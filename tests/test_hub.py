"""Adapters from a hub (a local fake of it: no network), manifests with sha256, and module selection."""

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open

from conftest import make_config, tiny_pool
from smartfed.data import composition_splits
from smartfed.errors import AdapterError
from smartfed.eval.generate import heldout_loss
from smartfed.eval.module_selection import score_modules
from smartfed.models import load_base_model
from smartfed.pool.resolve import resolve_pool_file
from smartfed.pool.sources import ManifestModule, fetch_adapter, fetch_checked, file_sha256, pinned, read_manifest


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """snapshot_download over a dict of repo -> local folder; snapshots land under their commit hash, as in the real cache."""
    repos: dict[str, Path] = {}
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **_):
        calls.append((repo_id, revision, tuple(allow_patterns or ())))
        if repo_id not in repos:
            raise FileNotFoundError(f"404: {repo_id}")
        commit = "c" * 40 if revision in (None, "main") else revision.ljust(40, "0")[:40]
        target = tmp_path / "hub-cache" / repo_id.replace("/", "--") / "snapshots" / commit
        if not target.exists():
            target.mkdir(parents=True)
            for f in repos[repo_id].iterdir():
                if any(Path(f.name).match(p) for p in allow_patterns or ["*"]):
                    shutil.copy(f, target / f.name)
        return str(target)

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return repos, calls


def test_hub_adapters_load_and_record_the_resolved_revision(fake_hub, tiny_model_folder, tmp_path):
    repos, calls = fake_hub
    folders = tiny_pool(tiny_model_folder, tmp_path / "published", 2)
    repos |= {"someone/m0": Path(folders[0]), "someone/m1": Path(folders[1])}
    base = {"model.name": tiny_model_folder, "pool.adapters": ["hf:someone/m0@abc123", "hf:someone/m1"], "run.out_dir": str(tmp_path / "runs"),
            "federation.num_clients": 2, "federation.clients_per_round": 2, "federation.rounds": 1, "training.local_steps": 1,
            "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4}
    from smartfed.fed.simulation import run_simulation

    config = make_config(base, {"run.name": "hub"})
    run_simulation(config, log=lambda *_: None)
    assert ("someone/m0", "abc123", ("adapter_config.json", "adapter_model.safetensors", "README.md")) in calls  # never a pickle
    header = (config.run_dir / "config.toml").read_text()
    sources = json.loads(header.split("# adapter_sources = ")[1].splitlines()[0])
    assert sources == [{"source": "hf:someone/m0@abc123", "revision": "abc123".ljust(40, "0")}, {"source": "hf:someone/m1", "revision": "c" * 40}]


def test_hub_adapters_are_safetensors_only_and_missing_repos_are_named(fake_hub, tiny_model_folder, tmp_path):
    repos, _ = fake_hub
    folder = Path(tiny_pool(tiny_model_folder, tmp_path / "published", 1)[0])
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folder / "adapter_config.json", pickled)
    torch.save({}, pickled / "adapter_model.bin")
    repos["someone/pickled"] = pickled
    model, _ = load_base_model(tiny_model_folder)
    with pytest.raises(AdapterError, match="hf:someone/pickled.*expected adapter_model.safetensors"):
        resolve_pool_file(("hf:someone/pickled",), "tiny", model)
    with pytest.raises(AdapterError, match="hf:someone/nothing.*could not fetch"):
        resolve_pool_file(("hf:someone/nothing",), "tiny", model)


def test_a_manifest_sha256_mismatch_is_refused(fake_hub, tiny_model_folder, tmp_path):
    repos, _ = fake_hub
    folder = Path(tiny_pool(tiny_model_folder, tmp_path / "published", 1)[0])
    repos["someone/m0"] = folder
    good = file_sha256(folder / "adapter_model.safetensors")
    assert fetch_checked(ManifestModule("m0", "hf:someone/m0@v1", good)).revision
    with pytest.raises(AdapterError, match=f"manifest module 'm0': .* sha256 expected {'0' * 64}, found {good}"):
        fetch_checked(ManifestModule("m0", "hf:someone/m0@v2", "0" * 64))
    manifest = tmp_path / "library.toml"
    manifest.write_text('[[module]]\nname = "m0"\nsource = "x"\n')
    with pytest.raises(AdapterError, match="module 0 expected string keys name, source, sha256, missing sha256"):
        read_manifest(manifest)


def test_selection_ranks_modules_by_their_own_loss_on_dev_items(tiny_model_folder, tmp_path, capsys):
    folders = [Path(f) for f in tiny_pool(tiny_model_folder, tmp_path, 3)]
    manifest = tmp_path / "library.toml"
    manifest.write_text("".join(f'[[module]]\nname = "m{i}"\nsource = "{f}"\nsha256 = "{file_sha256(f / "adapter_model.safetensors")}"\n'
                                f'skills = ["s{i}"]\nlicense = "mit"\n' for i, f in enumerate(folders)))
    model, tokenizer = load_base_model(tiny_model_folder)
    scores = score_modules(model, tokenizer, read_manifest(manifest), "zh+math", examples=4)
    items = composition_splits("zh+math").dev[:4]
    for s in scores:  # each score is the module's own peft loss, recomputed
        peft_model = PeftModel.from_pretrained(copy.deepcopy(model), s.module.source).eval()
        assert s.loss == pytest.approx(heldout_loss(peft_model, tokenizer, items), rel=1e-5)
    assert [s.loss for s in scores] == sorted(s.loss for s in scores) and not any(n.endswith("router") for n, _ in model.named_modules())
    from smartfed.cli.main import main

    assert main(["pool", "select", "--manifest", str(manifest), "--task", "zh+math", "-n", "2", "--examples", "4",
                 "--model", tiny_model_folder]) == 0
    out = capsys.readouterr().out
    assert f"| {scores[0].module.name} | yes | loss " in out and f"| {scores[2].module.name} | no |" in out
    pins = [f'{s.module.source}#sha256={s.module.sha256}' for s in scores]  # local folders: no commit to resolve
    assert f'adapters = ["{pins[0]}", "{pins[1]}"]' in out


def test_a_pinned_source_refuses_other_weights(fake_hub, tiny_model_folder, tmp_path):
    """What `pool select` prints: a hub source at its resolved commit with its weights' sha256; a run over it
    loads those weights and refuses others (a repo rewritten under the same commit name, or a local edit)."""
    repos, _ = fake_hub
    folder = Path(tiny_pool(tiny_model_folder, tmp_path / "published", 1)[0])
    repos["someone/m0"] = folder
    good = file_sha256(folder / "adapter_model.safetensors")
    module = ManifestModule("m0", "hf:someone/m0", good)
    source = pinned(module.source, fetch_checked(module).revision, good)
    assert source == f"hf:someone/m0@{'c' * 40}#sha256={good}"
    assert fetch_adapter(source).revision == "c" * 40 and fetch_adapter(f"{folder}#sha256={good.upper()}").folder == folder
    model, _ = load_base_model(tiny_model_folder)
    assert resolve_pool_file((source,), "tiny", model).is_file()
    other = "1" * 64
    with pytest.raises(AdapterError, match=re.escape(f"adapter source '{folder}#sha256={other}': ") + f".* sha256 expected {other}, found {good}"):
        resolve_pool_file((f"{folder}#sha256={other}",), "tiny", model)
    with pytest.raises(AdapterError, match="manifest module 'm0': sha256 expected 64 hex digits, found 'abc'"):
        fetch_checked(ManifestModule("m0", "hf:someone/m0", "abc"))
    # a manifest source pasted from `pool select` keeps one pin, the manifest's; another pin is refused
    assert fetch_checked(ManifestModule("m0", source, good)).folder == fetch_adapter(source).folder
    with pytest.raises(AdapterError, match=f"manifest module 'm0': source .* pins sha256 {other}, expected the manifest's {good}"):
        fetch_checked(ManifestModule("m0", f"hf:someone/m0#sha256={other}", good))
    for malformed in (f"{folder}#sha256=abc", f"{folder}#SHA256={good}x", f"{folder}#sha256={good}\n", f"{folder}#sha256={good}#sha256={good}"):
        with pytest.raises(AdapterError, match="expected '#sha256=' and 64 hex digits at its end"):
            fetch_adapter(malformed)


@pytest.mark.parametrize("text, message", [('[module]\nname = "m0"\n', "expected \\[\\[module\\]\\] tables"),
                                           ('[[module]]\nname = "m"\nsource = "x"\nsha256 = "0"\nskills = "zh"\n',
                                            "key 'skills' expected a list of strings, found 'zh'")])
def test_malformed_manifests_are_named(tmp_path, text, message):
    manifest = tmp_path / "library.toml"
    manifest.write_text(text)
    with pytest.raises(AdapterError, match=message):
        read_manifest(manifest)


def test_a_base_model_by_hub_id_loads_from_the_hub_cache(tiny_model_folder, tmp_path, monkeypatch):
    """`model.name = "org/name"` goes to transformers' hub loading; here a local hub cache laid out as the hub
    client writes it (models--org--name/snapshots/<commit>, refs/main), offline: no network."""
    commit = "a" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-llama"
    shutil.copytree(tiny_model_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model, tokenizer = load_base_model("someone/tiny-llama", "bfloat16", "cpu")
    reference, _ = load_base_model(tiny_model_folder)
    assert next(model.parameters()).dtype == torch.bfloat16 and len(tokenizer) == len(load_base_model(tiny_model_folder)[1])
    torch.testing.assert_close(model.model.embed_tokens.weight.float(), reference.model.embed_tokens.weight, rtol=1e-2, atol=1e-2)


def test_hub_adapters_resolve_in_the_real_hub_cache_layout(tiny_model_folder, tmp_path, monkeypatch):
    """The real huggingface_hub client, offline, over a cache laid out as it writes one (snapshots/<commit>,
    refs/<branch>): a branch or no revision resolves to the commit the ref names, which the source records."""
    commit = "b" * 40
    folder = Path(tiny_pool(tiny_model_folder, tmp_path / "published", 1)[0])
    repo = tmp_path / "hub" / "models--someone--m0"
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(folder / name, repo / "snapshots" / commit / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for spec in ("hf:someone/m0", "hf:someone/m0@main", f"hf:someone/m0@{commit}"):
        fetched = fetch_adapter(spec)
        assert fetched.revision == commit and fetched.folder == repo / "snapshots" / commit, spec
    good = file_sha256(folder / "adapter_model.safetensors")
    assert fetch_adapter(pinned("hf:someone/m0@main", commit, good)).revision == commit
    with pytest.raises(AdapterError, match="hf:someone/m0@v9.*could not fetch"):
        fetch_adapter("hf:someone/m0@v9")
