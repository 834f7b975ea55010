"""Ship built pool modules with the package: bf16 PEFT folders with their cards, small enough for a repository.

`smartfed pool build-all --ship` trains the default modules and copies them here, under
`smartfed/pool/shipped/<model>/<skill>/`, where `smartfed run` finds them before any built pool: a new
user's first run trains no pool. Each shipped folder is a normal PEFT adapter (`adapter_config.json`,
`adapter_model.safetensors` in bfloat16, `README.md`) plus the builder's `smartfed_card.json`, extended
with the sha256 of the fp32 weights it was rounded from.
"""

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from smartfed.errors import AdapterError
from smartfed.io import replace_folder
from smartfed.pool.resolve import shipped_pool_dir

CARD = "smartfed_card.json"
MAX_SHIPPED_MB = 25.0  # the whole shipped pool of one base model, in MB (10^6 bytes)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _ship_one(folder: Path, out: Path, model: str) -> None:
    """folder -> out as bf16, written in a temp folder and renamed in whole."""
    for name in ("adapter_config.json", "adapter_model.safetensors", CARD):
        if not (folder / name).is_file():
            raise AdapterError(f"module {folder}: expected {name} (a module built by `smartfed pool build`), found none")
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    weights = load_file(folder / "adapter_model.safetensors")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, tmp / "adapter_model.safetensors",
              metadata={"format": "pt"})
    config |= {"base_model_name_or_path": model, "inference_mode": True}
    card |= {"shipped": {"dtype": "bfloat16", "fp32_weights_sha256": _sha256(folder / "adapter_model.safetensors")}}
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (tmp / CARD).write_text(json.dumps(card, indent=1))
    readme = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else ""
    (tmp / "README.md").write_text(readme + "\nShipped with smartfed in bfloat16 (rounded from the fp32 build; its sha256 is in the card).\n")
    replace_folder(tmp, out)


def ship_pool(folders: list[Path], model: str, out_dir: Path | None = None, max_mb: float = MAX_SHIPPED_MB) -> list[Path]:
    """Write each built module folder as a bf16 shipped module under out_dir (default: the package's folder for `model`)."""
    out_dir = Path(out_dir) if out_dir is not None else shipped_pool_dir(model)
    total = sum((Path(f) / "adapter_model.safetensors").stat().st_size // 2 for f in folders
                if (Path(f) / "adapter_model.safetensors").is_file())  # fp32 -> bf16 halves the weights
    if total / 1e6 > max_mb:
        raise AdapterError(f"shipped pool of '{model}': expected at most {max_mb:g} MB of bf16 weights, found {total / 1e6:.1f} MB "
                           f"({len(folders)} modules): ship fewer modules or a smaller rank")
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = [out_dir / Path(f).name for f in folders]
    for folder, out in zip(folders, shipped):
        _ship_one(Path(folder), out, model)
    return shipped
