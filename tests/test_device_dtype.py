"""Base models in bf16 and fp16: experts follow the base layer's dtype and device, routers keep fp32
weights, and a run trains, aggregates and ends close to the fp32 run (tolerances stated below)."""

import copy
import json

import pytest
import torch

from conftest import make_config, tiny_pool
from smartfed import ExpertPool, attach_experts, router_state_dict
from smartfed.experts import routed_layers
from smartfed.fed.server import aggregate
from smartfed.fed.simulation import run_simulation

HALF = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", HALF)
def test_experts_take_the_base_dtype_and_routers_stay_fp32(llama_adapters, dtype):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    torch.manual_seed(0)
    full = attach_experts(copy.deepcopy(base), pool, router="linear", top_k=None, init_std=0.5)  # all experts: no top-k flips
    torch.manual_seed(0)
    half = attach_experts(copy.deepcopy(base).to(dtype), pool, router="linear", top_k=None, init_std=0.5)
    for layer in routed_layers(half).values():
        assert layer.A.dtype == layer.scaled_B.dtype == dtype
        assert all(p.dtype == torch.float32 for p in layer.router.parameters())
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = half(input_ids=ids).logits.float(), full(input_ids=ids).logits
    # half precision keeps ~3 significant digits; logits here are O(1)
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_routers_train_and_aggregate_in_fp32(llama_adapters, dtype):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    model = attach_experts(copy.deepcopy(base).to(dtype), pool, router="activation", top_k=2)
    before = router_state_dict(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(2))
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = router_state_dict(model)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in after.values())
    assert any(not torch.equal(after[k], before[k]) for k in after)
    mean = aggregate([(before, 1), (after, 3)])
    torch.testing.assert_close(mean[next(iter(mean))], (before[next(iter(mean))] + 3 * after[next(iter(mean))]) / 4)


# (dtype, tolerance on the initial held-out loss, on the final one), about 10x what this tiny model showed
# (bf16 5e-5 and 5e-4, fp16 0 and 3e-4: the loss is taken in fp32)
@pytest.mark.parametrize("dtype, initial_tol, final_tol", [("bfloat16", 0.001, 0.005), ("float16", 0.001, 0.005)])
def test_a_half_precision_run_ends_close_to_the_fp32_run(tiny_model_folder, tmp_path, dtype, initial_tol, final_tol, monkeypatch):
    import smartfed.fed.workspace as workspace

    loaded = []  # the dtype of every base model the runs load: the half run must really run in half precision
    real_load = workspace.load_base_model

    def load_and_record(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)
        loaded.append(next(model.parameters()).dtype)
        return model, tokenizer

    monkeypatch.setattr(workspace, "load_base_model", load_and_record)
    base = {"model.name": tiny_model_folder, "pool.adapters": tiny_pool(tiny_model_folder, tmp_path, 2), "run.out_dir": str(tmp_path),
            "model.device": "cpu", "data.composition": "zh+math", "federation.num_clients": 3, "federation.clients_per_round": 2,
            "federation.min_clients": 2, "federation.rounds": 2, "training.local_steps": 2, "training.batch_size": 2,
            "training.max_length": 64, "eval.examples": 6, "training.lr": 0.05}
    fp32 = run_simulation(make_config(base, {"run.name": "fp32"}), log=lambda *_: None)
    half = run_simulation(make_config(base, {"run.name": dtype, "model.dtype": dtype}), log=lambda *_: None)
    assert abs(half.initial_heldout_loss - fp32.initial_heldout_loss) < initial_tol
    assert abs(half.final_heldout_loss - fp32.final_heldout_loss) < final_tol
    assert set(loaded) == {torch.float32, getattr(torch, dtype)} and loaded[-1] == getattr(torch, dtype)


def test_experts_are_placed_on_the_base_models_device(llama_adapters):
    """On the meta device: shapes only, no memory; every expert buffer and router goes where the base layer is."""
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    meta = copy.deepcopy(base).to("meta")
    attach_experts(meta, pool, router="linear")
    for layer in routed_layers(meta).values():
        assert layer.A.device.type == layer.scaled_B.device.type == "meta"
        assert all(p.device.type == "meta" for p in layer.router.parameters())


def test_device_and_dtype_keys_are_checked():
    from smartfed.config import load_config
    from smartfed.errors import ConfigError

    with pytest.raises(ConfigError, match="config key 'model.dtype': expected one of float32, bfloat16, float16, 4bit, 8bit, found 'int8'"):
        load_config(overrides=["model.dtype=int8"])
    with pytest.raises(ConfigError, match="config key 'model.device': expected one of auto, cpu, cuda, mps or cuda:N, found 'tpu'"):
        load_config(overrides=["model.device=tpu"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_bf16_run(tiny_model_folder, tmp_path):
    base = {"model.name": tiny_model_folder, "pool.adapters": tiny_pool(tiny_model_folder, tmp_path, 2), "run.out_dir": str(tmp_path),
            "model.device": "cuda", "model.dtype": "bfloat16", "federation.num_clients": 3, "federation.clients_per_round": 2,
            "federation.rounds": 1, "training.local_steps": 1, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4}
    gpu = run_simulation(make_config(base, {"run.name": "cuda"}), log=lambda *_: None)
    cpu = run_simulation(make_config(base, {"run.name": "cpu", "model.device": "cpu", "model.dtype": "float32"}), log=lambda *_: None)
    assert abs(gpu.initial_heldout_loss - cpu.initial_heldout_loss) < 0.05 and abs(gpu.final_heldout_loss - cpu.final_heldout_loss) < 0.1


def test_memory_estimate_by_hand(llama_adapters):
    """Bytes from shapes: base at 4/2/0.5625 bytes a linear parameter, experts in the base dtype, 16 bytes a trained parameter."""
    from smartfed.metrics.memory import memory_rows

    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    rows = {r.dtype: r for r in memory_rows(copy.deepcopy(base).to("meta"), pool, "linear", 8)}
    params = sum(p.numel() for p in base.parameters())
    linear = sum(m.weight.numel() for m in base.modules() if isinstance(m, torch.nn.Linear))
    experts = sum(m.num_experts * (m.d_in + m.d_out) for m in pool.matrices.values())
    routers = sum(m.num_experts * m.d_in for m in pool.matrices.values())
    lora = sum(8 * (m.d_in + m.d_out) for m in pool.matrices.values())
    assert rows["float32"].base == 4 * params and rows["bfloat16"].base == 2 * params
    assert rows["4bit"].base == pytest.approx(linear * 0.5625 + (params - linear) * 2)
    assert rows["float32"].experts == 4 * experts and rows["4bit"].experts == 2 * experts
    assert rows["float32"].routers == 16 * routers and rows["float32"].lora == 16 * lora
    assert rows["bfloat16"].fedit == 2 * params + 16 * lora


@pytest.mark.parametrize("method", ["smartfed", "fedit"])
def test_gradient_checkpointing_gives_the_same_run(tiny_model_folder, tmp_path, method):
    from safetensors.torch import load_file

    base = {"model.name": tiny_model_folder, "pool.adapters": tiny_pool(tiny_model_folder, tmp_path, 2), "run.out_dir": str(tmp_path),
            "run.method": method, "model.device": "cpu", "federation.num_clients": 2, "federation.clients_per_round": 2,
            "federation.rounds": 1, "training.local_steps": 2, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4}
    plain = make_config(base, {"run.name": "plain"})
    again = make_config(base, {"run.name": "checkpointed", "training.gradient_checkpointing": True})
    for config in (plain, again):
        run_simulation(config, log=lambda *_: None)
    from smartfed.fed.workspace import load_model_side

    model = load_model_side(again).model
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())  # really on
    a, b = (load_file(c.run_dir / "checkpoints" / "round-0001.safetensors") for c in (plain, again))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    from safetensors import safe_open

    scores = []
    for config in (plain, again):  # EEQA's scores are measured in forward: a recomputing backward must not count twice
        with safe_open(config.run_dir / "checkpoints" / "round-0001.safetensors", framework="pt") as f:
            scores.append(json.loads(f.metadata()["scores"]))
    assert (scores[0] is None) == (method == "fedit") and (scores[0] is None or scores[1] == pytest.approx(scores[0], rel=1e-5))


def test_experts_on_a_quantised_base_take_its_compute_dtype(llama_adapters):
    """A 4-bit layer stores packed uint8 weights: experts must use its compute dtype, not the storage dtype."""
    from smartfed.experts.layer import RoutedLinear

    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    name, experts = next(iter(pool.matrices.items()))
    packed = torch.nn.Linear(experts.d_in, experts.d_out)
    packed.weight = torch.nn.Parameter(torch.zeros(experts.d_out * experts.d_in // 2, 1, dtype=torch.uint8), requires_grad=False)
    packed.compute_dtype = torch.float16
    from smartfed.routers import build_router

    layer = RoutedLinear(packed, experts, build_router("linear", experts), 2)
    assert layer.A.dtype == layer.scaled_B.dtype == torch.float16 and layer.router.weight.dtype == torch.float32


def test_quantised_bases_need_bitsandbytes_or_say_so(tiny_model_folder):
    from smartfed.errors import SmartFedError
    from smartfed.models import load_base_model

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(SmartFedError, match="model.dtype = '4bit' needs bitsandbytes: pip install 'smartfed\\[gpu\\]'"):
            load_base_model(tiny_model_folder, "4bit", "cpu")
        return
    if not torch.cuda.is_available():
        pytest.skip("bitsandbytes is installed but 4-bit kernels are tested on a GPU")
    model, _ = load_base_model(tiny_model_folder, "4bit", "cuda")
    assert any("4bit" in type(m).__name__ for m in model.modules())


@pytest.mark.parametrize("spec, message", [("cuda:x", "device expected one of"), ("tpu", "device expected one of"),
                                           ("cuda:99", "device 'cuda:99': this machine has")])
def test_bad_devices_are_named(spec, message):
    from smartfed.errors import SmartFedError
    from smartfed.models import resolve_device

    if spec == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(SmartFedError, match=message):
        resolve_device(spec)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_takes_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    from smartfed.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)
