"""Read one PEFT LoRA adapter folder and check it against a base model.

Honours `r`, `lora_alpha`, `use_rslora`, `rank_pattern`, `alpha_pattern`, `target_modules` (list or
regex), `layers_to_transform`/`layers_pattern`, `exclude_modules` and `fan_in_fan_out`, resolving them
with peft's own matching functions so our reading is the one peft would make. Anything that is not
plain LoRA on linear layers is refused, because it cannot be split into rank-1 experts exactly.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from peft.tuners.tuners_utils import check_target_module_exists
from peft.utils.other import get_pattern_key
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from smartfed.errors import AdapterError

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>A|B)\.weight$")


@dataclass(frozen=True)
class LoraMatrix:
    """One adapted matrix of one LoRA module: delta(x) = scale * B @ (A @ x)."""

    A: torch.Tensor  # (r, d_in)
    B: torch.Tensor  # (d_out, r)
    scale: float


@dataclass(frozen=True)
class LoraAdapter:
    name: str
    path: str
    base_model: str | None
    r: int
    lora_alpha: float
    use_rslora: bool
    matrices: dict[str, LoraMatrix]  # base-model module name -> matrix

    @property
    def rank_total(self) -> int:
        return sum(m.A.shape[0] for m in self.matrices.values())


MAX_WEIGHT = 1e3  # a LoRA factor entry beyond this is a broken or malicious file, not a trained module


def linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """(d_in, d_out) of a linear layer, or None for any other module. GPT-2's Conv1D stores W transposed."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        d_in, d_out = module.weight.shape
        return d_in, d_out
    return None


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise AdapterError(f"{folder}: expected a PEFT adapter folder with {CONFIG_FILE}, found no such file")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise AdapterError(f"{path}: expected a JSON object, found {type(config).__name__}")

    def refuse(key: str, expected: str, found) -> None:
        raise AdapterError(f"{path}: key '{key}' expected {expected}, found {found!r}; only plain LoRA can be split into rank-1 experts")

    if config.get("peft_type") != "LORA":
        refuse("peft_type", "'LORA'", config.get("peft_type"))
    for key in ("use_dora", "use_qalora"):
        if config.get(key):
            refuse(key, "false", config[key])
    if config.get("lora_bias"):
        refuse("lora_bias", "false", config["lora_bias"])
    if config.get("modules_to_save"):
        refuse("modules_to_save", "none (whole replaced modules are not experts)", config["modules_to_save"])
    if config.get("target_parameters"):
        refuse("target_parameters", "none", config["target_parameters"])
    for key, kind, most in (("r", int, 65536), ("lora_alpha", (int, float), 1e5)):
        value = config.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or not math.isfinite(value) or not 0 < value <= most:
            raise AdapterError(f"{path}: key '{key}' expected a finite number in (0, {most:g}], found {value!r}")
    _check_shapes_of_keys(path, config)
    return config


def _check_shapes_of_keys(path: Path, config: dict) -> None:
    """target_modules, rank_pattern, alpha_pattern and layers_to_transform of the types peft reads."""
    targets = config.get("target_modules")
    if not (targets is None or isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise AdapterError(f"{path}: key 'target_modules' expected a list of module names or a regex string, found {targets!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        pattern = config.get(key) or {}
        if not isinstance(pattern, dict) or not all(isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                                                    and math.isfinite(v) and v > 0 for k, v in pattern.items()):
            raise AdapterError(f"{path}: key '{key}' expected an object of module pattern -> positive number, found {pattern!r}")
    layers = config.get("layers_to_transform")
    if not (layers is None or (isinstance(layers, int) and not isinstance(layers, bool))
            or (isinstance(layers, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in layers))):
        raise AdapterError(f"{path}: key 'layers_to_transform' expected an int or a list of ints, found {layers!r}")


def _read_weights(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = folder / SAFETENSORS_FILE
    if path.is_file():
        try:
            return path, load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise AdapterError(f"{path}: corrupt safetensors file ({err})") from err
    path = folder / PICKLE_FILE
    if path.is_file():
        try:  # weights_only refuses arbitrary pickled objects: a .bin file cannot run code here
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise AdapterError(f"{path}: cannot be loaded with torch.load(weights_only=True) ({err})") from err
    raise AdapterError(f"{folder}: expected {SAFETENSORS_FILE} (or {PICKLE_FILE}), found neither")


def _targets(config: dict, model: nn.Module) -> set[str] | None:
    """Module names the config says are adapted, by peft's own rules; None for 'all-linear'."""
    if isinstance(config.get("target_modules"), str) and config["target_modules"].lower() == "all-linear":
        return None
    matcher = SimpleNamespace(
        target_modules=config.get("target_modules"),
        target_parameters=None,
        exclude_modules=config.get("exclude_modules"),
        modules_to_save=None,
        layers_to_transform=config.get("layers_to_transform"),
        layers_pattern=config.get("layers_pattern"),
    )
    # check_target_module_exists returns True, a re.Match, or a falsy value (None, False, excluded).
    return {name for name, _ in model.named_modules() if name and check_target_module_exists(matcher, name)}


def _pairs(weights_path: Path, weights: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """module name -> {"A": lora_A weight, "B": lora_B weight}, as found in the file."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterError(
                f"{weights_path}: key '{key}' expected 'base_model.model.<module>.lora_A.weight' or '.lora_B.weight' "
                "(plain LoRA on linear layers)"
            )
        pairs.setdefault(match["module"], {})[match["part"]] = tensor
    return pairs


def _matrix(weights_path: Path, config: dict, module_name: str, parts: dict, modules: dict, expected: set[str] | None) -> LoraMatrix:
    """One module's A, B and scale, checked against the base model's layer of that name."""
    prefix = f"base_model.model.{module_name}"
    where = f"{weights_path}: key '{prefix}'"
    if set(parts) != {"A", "B"}:
        missing = ({"A", "B"} - set(parts)).pop()
        raise AdapterError(f"{where}: expected both lora_A and lora_B, found no lora_{missing}")
    if module_name not in modules:
        raise AdapterError(f"{where}: expected a module of that name in the base model, found none")
    if expected is not None and module_name not in expected:
        raise AdapterError(f"{where}: present in the weights but not matched by target_modules={config.get('target_modules')!r}")
    shape = linear_shape(modules[module_name])
    if shape is None:
        raise AdapterError(f"{where}: expected a linear layer, found {type(modules[module_name]).__name__}")
    d_in, d_out = shape
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    r = rank_pattern.get(get_pattern_key(rank_pattern.keys(), module_name), config["r"])
    alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), module_name), config["lora_alpha"])
    A, B = parts["A"], parts["B"]
    for part, tensor, shape in (("A", A, (r, d_in)), ("B", B, (d_out, r))):
        if tuple(tensor.shape) != shape:
            raise AdapterError(f"{weights_path}: key '{prefix}.lora_{part}.weight': expected shape {shape}, found {tuple(tensor.shape)}")
    if not (torch.isfinite(A).all() and torch.isfinite(B).all()):
        raise AdapterError(f"{where}: expected finite weights, found NaN or Inf")
    largest = max(float(A.abs().max()), float(B.abs().max()))
    if largest > MAX_WEIGHT:
        raise AdapterError(f"{where}: expected LoRA weights of magnitude <= {MAX_WEIGHT:g}, found {largest:.3g}")
    scale = alpha / math.sqrt(r) if config.get("use_rslora", False) else alpha / r
    return LoraMatrix(A=A.float(), B=B.float(), scale=float(scale))


def read_adapter(folder: str | Path, model: nn.Module, name: str | None = None) -> LoraAdapter:
    """Read a PEFT LoRA adapter folder and check every matrix against `model`."""
    folder = Path(folder)
    config = _read_config(folder)
    weights_path, weights = _read_weights(folder)
    modules = dict(model.named_modules())
    pairs = _pairs(weights_path, weights)
    expected = _targets(config, model)
    if expected is not None:
        for module_name in sorted(expected - pairs.keys()):
            if linear_shape(modules[module_name]) is not None:
                raise AdapterError(f"{weights_path}: config targets '{module_name}', expected lora_A/lora_B for it, found none")
    matrices = {m: _matrix(weights_path, config, m, parts, modules, expected) for m, parts in pairs.items()}
    if not matrices:
        raise AdapterError(f"{weights_path}: expected at least one lora_A/lora_B pair, found none")
    # Keep the base model's module order, so pools built from the same adapters are identical.
    order = {name: i for i, name in enumerate(modules)}
    matrices = dict(sorted(matrices.items(), key=lambda item: order[item[0]]))
    return LoraAdapter(
        name=name or folder.resolve().name,
        path=str(folder),
        base_model=config.get("base_model_name_or_path"),
        r=int(config["r"]),
        lora_alpha=float(config["lora_alpha"]),
        use_rslora=bool(config.get("use_rslora", False)),
        matrices=matrices,
    )
