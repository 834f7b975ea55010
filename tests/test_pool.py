"""Reading PEFT adapters into a pool: decomposition, the saved file, and every bad input."""

import copy
import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_adapter, tiny_llama
from smartfed import ExpertPool, attach_experts
from smartfed.errors import AdapterError, PoolFileError


def test_pool_decomposes_each_module_along_its_rank(llama_adapters):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    assert [m.name for m in pool.modules] == [f.name for f in folders]
    q0 = pool.matrices["model.layers.0.self_attn.q_proj"]
    # modules targeting layer-0 q_proj: r4_qv (4), r8_all_rslora (8), r2_patterns (2), r5_layer0_only (5)
    assert q0.num_experts == 4 + 8 + 2 + 5
    assert q0.source.tolist() == [0] * 4 + [1] * 8 + [2] * 2 + [4] * 5
    assert q0.rank_index.tolist() == list(range(4)) + list(range(8)) + list(range(2)) + list(range(5))
    torch.testing.assert_close(q0.scale[:4], torch.full((4,), 8 / 4))
    torch.testing.assert_close(q0.scale[4:12], torch.full((8,), 16 / 8**0.5))
    # layers_to_transform=[0]: layer 1 q_proj has no experts from module 4
    assert 4 not in pool.matrices["model.layers.1.self_attn.q_proj"].source.tolist()
    # rank_pattern gives up_proj rank 6, alpha_pattern gives down_proj alpha 3 (rank 2)
    up = pool.matrices["model.layers.0.mlp.up_proj"]
    assert (up.source == 2).sum() == 6
    down = pool.matrices["model.layers.0.mlp.down_proj"]
    torch.testing.assert_close(down.scale[down.source == 2], torch.full((2,), 3 / 2))
    # the experts are the adapter's own rows and columns
    weights = load_file(folders[0] / "adapter_model.safetensors")
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    assert torch.equal(q0.A[:4], weights[f"{key}.lora_A.weight"])
    assert torch.equal(q0.B[:, :4], weights[f"{key}.lora_B.weight"])


def test_pool_file_round_trips_memory_mapped(llama_adapters, tmp_path):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    path = tmp_path / "pool.safetensors"
    pool.save(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    loaded = ExpertPool.load(path)
    assert loaded.modules == pool.modules
    assert list(loaded.matrices) == list(pool.matrices)
    for name, m in pool.matrices.items():
        for field in ("A", "B", "scale", "source", "rank_index"):
            assert torch.equal(getattr(loaded.matrices[name], field), getattr(m, field)), (name, field)
    # Memory-mapped: tensors are views into one mapping of the file, laid out as in the file.
    a = loaded.matrices["model.layers.0.self_attn.q_proj"].A
    b = loaded.matrices["model.layers.1.mlp.down_proj"].B
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    offset = lambda key: header[key]["data_offsets"][0]  # noqa: E731
    assert b.data_ptr() - a.data_ptr() == offset("model.layers.1.mlp.down_proj.B") - offset("model.layers.0.self_attn.q_proj.A")
    # Copy-on-write: writing to a loaded tensor never changes the file.
    a.add_(1.0)
    assert torch.equal(ExpertPool.load(path).matrices["model.layers.0.self_attn.q_proj"].A, pool.matrices["model.layers.0.self_attn.q_proj"].A)


def test_loaded_pool_attaches_and_matches_the_built_one(llama_adapters, tmp_path):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    pool.save(tmp_path / "pool.safetensors")
    ids = torch.randint(0, 128, (1, 6), generator=torch.Generator().manual_seed(0))
    outputs = []
    for p in (pool, ExpertPool.load(tmp_path / "pool.safetensors")):
        torch.manual_seed(0)
        model = attach_experts(copy.deepcopy(base), p, router="linear", init_std=0.3)
        with torch.no_grad():
            outputs.append(model(input_ids=ids).logits)
    assert torch.equal(*outputs)


def test_corrupt_pool_files_are_refused(llama_adapters, tmp_path):
    base, folders = llama_adapters
    path = tmp_path / "pool.safetensors"
    ExpertPool.from_adapters(folders, base).save(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PoolFileError, match="truncated.safetensors"):
        ExpertPool.load(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(PoolFileError, match="corrupt"):
        ExpertPool.load(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, plain)
    with pytest.raises(PoolFileError, match="metadata 'format' expected 'smartfed-pool-v1', found None"):
        ExpertPool.load(plain)


@pytest.fixture
def one_adapter(tmp_path):
    base = tiny_llama()
    folder = make_adapter(base, tmp_path / "math", 0, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    return base, folder


def edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def edit_weights(folder, fn):
    path = folder / "adapter_model.safetensors"
    weights = load_file(path)
    fn(weights)
    save_file(weights, path)


def test_missing_folder_or_files(one_adapter, tmp_path):
    base, folder = one_adapter
    with pytest.raises(AdapterError, match=f"{tmp_path / 'nope'}: expected a PEFT adapter folder with adapter_config.json"):
        ExpertPool.from_adapters([tmp_path / "nope"], base)
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="expected adapter_model.safetensors \\(or adapter_model.bin\\), found neither"):
        ExpertPool.from_adapters([folder], base)


def test_corrupt_config_and_weights(one_adapter):
    base, folder = one_adapter
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(AdapterError, match="adapter_model.safetensors: corrupt safetensors file"):
        ExpertPool.from_adapters([folder], base)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="adapter_config.json: not valid JSON"):
        ExpertPool.from_adapters([folder], base)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"use_dora": True}, "key 'use_dora' expected false, found True"),
        ({"peft_type": "IA3"}, "key 'peft_type' expected 'LORA', found 'IA3'"),
        ({"modules_to_save": ["lm_head"]}, "key 'modules_to_save' expected none"),
        ({"r": 0}, r"key 'r' expected a finite number in \(0, 65536\], found 0"),
    ],
)
def test_what_is_not_plain_lora_is_refused(one_adapter, changes, message):
    base, folder = one_adapter
    edit_config(folder, **changes)
    with pytest.raises(AdapterError, match=message):
        ExpertPool.from_adapters([folder], base)


def test_shape_mismatch_names_folder_key_expected_and_found(one_adapter):
    base, folder = one_adapter
    key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"
    edit_weights(folder, lambda w: w.update({key: torch.zeros(31, 4)}))
    # tiny llama: v_proj has 2 kv heads of 16 dims -> d_out = 32
    with pytest.raises(AdapterError, match=rf"math/adapter_model.safetensors: key '{key}': expected shape \(32, 4\), found \(31, 4\)"):
        ExpertPool.from_adapters([folder], base)


def test_rank_that_disagrees_with_config_is_refused(one_adapter):
    base, folder = one_adapter
    edit_config(folder, r=5)
    with pytest.raises(AdapterError, match=r"lora_A.weight': expected shape \(5, 64\), found \(4, 64\)"):
        ExpertPool.from_adapters([folder], base)


def test_missing_half_and_untargeted_and_unknown_keys(one_adapter, tmp_path):
    base, folder = one_adapter
    fresh = lambda name: shutil.copytree(folder, tmp_path / name)  # noqa: E731
    f = fresh("no_b")
    edit_weights(f, lambda w: w.pop("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"))
    with pytest.raises(AdapterError, match="q_proj': expected both lora_A and lora_B, found no lora_B"):
        ExpertPool.from_adapters([f], base)
    f = fresh("missing_target")
    edit_weights(f, lambda w: [w.pop(k) for k in list(w) if "layers.1.self_attn.v_proj" in k])
    with pytest.raises(AdapterError, match="config targets 'model.layers.1.self_attn.v_proj', expected lora_A/lora_B for it, found none"):
        ExpertPool.from_adapters([f], base)
    f = fresh("extra")
    edit_weights(f, lambda w: w.update({"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": torch.zeros(4, 64),
                                        "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight": torch.zeros(96, 4)}))
    with pytest.raises(AdapterError, match="up_proj': present in the weights but not matched by target_modules"):
        ExpertPool.from_adapters([f], base)
    f = fresh("embedding")
    edit_weights(f, lambda w: w.update({"base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(4, 128)}))
    with pytest.raises(AdapterError, match="lora_embedding_A' expected 'base_model.model.<module>.lora_A.weight'"):
        ExpertPool.from_adapters([f], base)
    f = fresh("nan")
    edit_weights(f, lambda w: w["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].fill_(float("nan")))
    with pytest.raises(AdapterError, match="expected finite weights, found NaN or Inf"):
        ExpertPool.from_adapters([f], base)


def test_pickle_weights_load_only_as_plain_tensors(one_adapter, tmp_path):
    base, folder = one_adapter
    weights = load_file(folder / "adapter_model.safetensors")
    (folder / "adapter_model.safetensors").unlink()
    torch.save(weights, folder / "adapter_model.bin")
    from_bin = ExpertPool.from_adapters([folder], base)
    assert torch.equal(from_bin.matrices["model.layers.0.self_attn.q_proj"].A, weights["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"])

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    with open(folder / "adapter_model.bin", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(AdapterError, match=r"cannot be loaded with torch.load\(weights_only=True\)"):
        ExpertPool.from_adapters([folder], base)
    assert (tmp_path / "victim").exists()


def test_adapter_for_a_larger_model_names_the_module(one_adapter, tmp_path):
    base, folder = one_adapter
    smaller = tiny_llama()
    smaller.model.layers = smaller.model.layers[:1]
    with pytest.raises(AdapterError, match="config targets|expected a module of that name"):
        ExpertPool.from_adapters([folder], smaller)
