"""Where a run's pool comes from: one pool .safetensors file, adapter folders (decomposed once and
cached beside them), or the default pool built for the base model by `smartfed pool build-all`.

Starting a run never trains modules: a default pool that is not built yet is an error that names the
command that builds it.
"""

from pathlib import Path

from torch import nn

from smartfed.errors import AdapterError
from smartfed.models import cache_dir
from smartfed.pool.expert_pool import ExpertPool

POOL_FILE = "pool.safetensors"
DEFAULT_SKILLS = ("zh", "math", "code", "instruct")  # the default pool: one module per skill


def default_pool_dir(model: str) -> Path:
    """Where `smartfed pool build-all` puts the default pool of `model` unless told otherwise."""
    return cache_dir() / "pools" / Path(model).name.removesuffix(".gguf")


def default_pool_folders(model: str) -> list[Path]:
    """The default pool's adapter folders; an AdapterError naming the build command if any is missing."""
    root = default_pool_dir(model)
    folders = [root / skill for skill in DEFAULT_SKILLS]
    missing = [f.name for f in folders if not (f / "adapter_config.json").is_file()]
    if missing:
        raise AdapterError(f"the default pool of '{model}' is not built: expected modules {', '.join(DEFAULT_SKILLS)} in {root}, "
                           f"missing {', '.join(missing)}; build it with `smartfed pool build-all --model {model}` "
                           f"(or give adapter folders with --set pool.adapters=[...])")
    return folders


def resolve_pool_file(adapters: tuple[str, ...], model_name: str, model: nn.Module) -> Path:
    """The pool as one safetensors file: given, or decomposed from adapter folders and cached."""
    if len(adapters) == 1 and adapters[0].endswith(".safetensors"):
        if not Path(adapters[0]).is_file():
            raise AdapterError(f"pool file {adapters[0]}: not found")
        return Path(adapters[0])
    if adapters:
        folders = [Path(p) for p in adapters]
        pool_file = folders[0].parent / f"pool-{'-'.join(f.name for f in folders)}.safetensors"
    else:
        folders = default_pool_folders(model_name)
        pool_file = default_pool_dir(model_name) / POOL_FILE
    for folder in folders:
        if not folder.is_dir():
            raise AdapterError(f"adapter folder {folder}: not found")
    newest_adapter = max(max(p.stat().st_mtime for p in f.glob("adapter_model.*")) if any(f.glob("adapter_model.*"))
                         else 0.0 for f in folders)
    if not pool_file.is_file() or pool_file.stat().st_mtime < newest_adapter:
        ExpertPool.from_adapters(folders, model).save(pool_file)
    return pool_file
