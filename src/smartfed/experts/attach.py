"""Put routed experts into a base model, take them out, set quotas, and move router weights."""

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from smartfed.errors import ConfigError, RouterStateError
from smartfed.experts.layer import RoutedLinear
from smartfed.pool.expert_pool import ExpertPool
from smartfed.routers import StaticRouter, build_router


def routed_layers(model: nn.Module) -> dict[str, RoutedLinear]:
    """Adapted matrix name (the base model's module name) -> its RoutedLinear."""
    return {name: m for name, m in model.named_modules() if isinstance(m, RoutedLinear)}


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def attach_experts(
    model: nn.Module,
    pool: ExpertPool,
    router: str = "linear",
    top_k: int | Mapping[str, int] | None = 2,
    init_std: float = 0.01,
    router_rank: int = 4,
    gate: str = "softmax",
    output_scale: bool = False,
    init: str = "random",
    sparse: bool | str = False,  # or "auto" (RoutedLinear)
    **router_options,
) -> nn.Module:
    """Wrap every matrix the pool adapts in a RoutedLinear, in place, and return the model.

    `top_k`: one k for every matrix (capped at the matrix's M_j), a {matrix: k} map covering every
    matrix, or None for all experts. `gate`, `output_scale` and `init` choose the routers' gate
    function, learned output scale and start; `router_options` go to `build_router` (smartfed.routers).
    Afterwards only router parameters require grad.
    """
    if routed_layers(model):
        raise ValueError("model already has experts attached; call detach_experts first")
    pool.check_fits(model)
    quotas = _initial_quotas(pool, top_k)
    model.requires_grad_(False)
    for name, experts in pool.matrices.items():
        layer = RoutedLinear(
            model.get_submodule(name),
            experts,
            build_router(router, experts, init_std=init_std, rank=router_rank, gate=gate, output_scale=output_scale, init=init,
                         **router_options),
            quotas[name],
            sparse=sparse,
        )
        _set_submodule(model, name, layer)
    for p in router_parameters(model):
        p.requires_grad_(True)
    return model


def _initial_quotas(pool: ExpertPool, top_k: int | Mapping[str, int] | None) -> dict[str, int]:
    if top_k is None:
        return {n: m.num_experts for n, m in pool.matrices.items()}
    if isinstance(top_k, int):
        largest = max(m.num_experts for m in pool.matrices.values())
        if not 1 <= top_k <= largest:
            raise ConfigError(f"config key 'router.top_k': expected an int in [1, {largest}] (the most experts any matrix of "
                              f"this pool has), found {top_k}")
        return {n: min(top_k, m.num_experts) for n, m in pool.matrices.items()}
    missing = pool.matrices.keys() - top_k.keys()
    if missing:
        raise ValueError(f"top_k map expected a quota for every adapted matrix, missing {sorted(missing)[:3]}")
    return _checked_quotas(pool.matrices, top_k, {n: m.num_experts for n, m in pool.matrices.items()})


def _checked_quotas(names, quotas: Mapping[str, int], sizes: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for name, k in quotas.items():
        if name not in names:
            raise ValueError(f"quota for '{name}': expected an adapted matrix name, found no such matrix")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= sizes[name]:
            raise ValueError(f"quota for '{name}': expected an int in [1, {sizes[name]}], found {k!r}")
        out[name] = k
    return out


def set_quotas(model: nn.Module, quotas: Mapping[str, int]) -> None:
    """Change k_j for some matrices; takes effect on the next forward, nothing is rebuilt."""
    layers = routed_layers(model)
    for name, k in _checked_quotas(layers, quotas, {n: l.num_experts for n, l in layers.items()}).items():
        layers[name].top_k = k


def get_quotas(model: nn.Module) -> dict[str, int]:
    return {name: layer.top_k for name, layer in routed_layers(model).items()}


def detach_experts(model: nn.Module) -> nn.Module:
    """Put every original layer back, in place, and return the model."""
    for name, layer in routed_layers(model).items():
        _set_submodule(model, name, layer.base_layer)
    return model


def set_module_weights(model: nn.Module, weights: Sequence[float]) -> None:
    """Set every `static` router to weight w[n] on pool module n (one weight per module, all matrices)."""
    with torch.no_grad():
        for name, layer in routed_layers(model).items():
            if not isinstance(layer.router, StaticRouter):
                raise TypeError(f"'{name}': expected a static router, found {type(layer.router).__name__}")
            layer.router.weight.copy_(torch.tensor([float(weights[n]) for n in layer.router.module_ids]))


def router_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for layer in routed_layers(model).values() for p in layer.router.parameters()]


def router_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """'<matrix>.<param>' -> a detached copy of every router parameter. This is all a client sends."""
    return {
        f"{name}.{key}": p.detach().to("cpu", copy=True)  # what crosses the network lives on the host
        for name, layer in routed_layers(model).items()
        for key, p in layer.router.named_parameters()
    }


def state_mismatch(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> str | None:
    """Why `state` does not have exactly the keys, shapes and dtypes of `reference`; None if it does."""
    missing, unexpected = sorted(reference.keys() - state.keys()), sorted(state.keys() - reference.keys())
    if missing or unexpected:
        return f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
    for key, ref in reference.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape or value.dtype != ref.dtype:
            found = (tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"key '{key}': expected {(tuple(ref.shape), ref.dtype)}, found {found}"
    return None


def load_router_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy router weights in; any missing or unexpected key, or a wrong shape or dtype, is an error."""
    params = {
        f"{name}.{key}": p for name, layer in routed_layers(model).items() for key, p in layer.router.named_parameters()
    }
    copy_into(params, state, "router state")


def copy_into(params: Mapping[str, nn.Parameter], state: Mapping[str, torch.Tensor], what: str) -> None:
    """params[k] <- state[k] for every key, after checking keys, shapes and dtypes (RouterStateError)."""
    why = state_mismatch(state, params)
    if why:
        raise RouterStateError(f"{what}: {why}")
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(state[key])
