"""Ship built pool modules with the package: bf16 PEFT folders with their cards, small enough for a repository.

`smartfed pool build-all --ship` trains the default modules and copies them here, under
`smartfed/pool/shipped/<model>/<skill>/`, where `smartfed run` finds them before any built pool: a new
user's first run trains no pool. Each shipped folder is a normal PEFT adapter (`adapter_config.json`,
`adapter_model.safetensors` in bfloat16, `README.md`) plus the builder's `smartfed_card.json`, extended
with the sha256 of the fp32 weights it was rounded from. The pool of a model is replaced as a whole.
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from smartfed.errors import AdapterError
from smartfed.io import replace_folder
from smartfed.pool.build import CARD
from smartfed.pool.resolve import shipped_pool_dir
from smartfed.pool.sources import file_sha256

MAX_SHIPPED_MB = 25.0  # the whole shipped pool of one base model, in MB (10^6 bytes)


def _read_built(folder: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(adapter config, card, weights) of a module built by `smartfed pool build`; an AdapterError naming what is missing."""
    for name in ("adapter_config.json", "adapter_model.safetensors", CARD):
        if not (folder / name).is_file():
            raise AdapterError(f"module {folder}: expected {name} (a module built by `smartfed pool build`), found none")
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise AdapterError(f"module {folder}: expected JSON in adapter_config.json and {CARD}, found {err}") from err
    if not isinstance(config, dict) or not isinstance(card, dict):
        raise AdapterError(f"module {folder}: expected JSON objects in adapter_config.json and {CARD}")
    return config, card, load_file(folder / "adapter_model.safetensors")


def _write_shipped(folder: Path, out: Path, model: str, config: dict, card: dict, weights: dict[str, torch.Tensor]) -> None:
    out.mkdir(parents=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, out / "adapter_model.safetensors", metadata={"format": "pt"})
    config = config | {"base_model_name_or_path": model, "inference_mode": True}
    card = card | {"shipped": {"dtype": "bfloat16", "fp32_weights_sha256": file_sha256(folder / "adapter_model.safetensors")}}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (out / CARD).write_text(json.dumps(card, indent=1))
    readme = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else ""
    (out / "README.md").write_text(readme + "\nShipped with smartfed in bfloat16 (rounded from the fp32 build; its sha256 is in the card).\n")


def ship_pool(folders: list[Path], model: str, out_dir: Path | None = None, max_mb: float = MAX_SHIPPED_MB) -> list[Path]:
    """Write the built module folders as the bf16 shipped pool of `model` (default: the package's folder for it),
    replacing any pool shipped there before as a whole; every folder is read and checked before anything is written."""
    out_dir = Path(out_dir) if out_dir is not None else shipped_pool_dir(model)
    built = [(Path(f), *_read_built(Path(f))) for f in folders]
    total = sum(2 * t.numel() for _, _, _, weights in built for t in weights.values())  # bytes in bf16
    if total / 1e6 > max_mb:
        raise AdapterError(f"shipped pool of '{model}': expected at most {max_mb:g} MB of bf16 weights, found {total / 1e6:.1f} MB "
                           f"({len(folders)} modules): ship fewer modules or a smaller rank")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for folder, config, card, weights in built:
        _write_shipped(folder, tmp / folder.name, model, config, card, weights)
    replace_folder(tmp, out_dir)
    return [out_dir / folder.name for folder, *_ in built]
