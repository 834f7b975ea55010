"""Where a run's pool comes from: one pool .safetensors file, adapter folders (decomposed once and
cached beside them), or the default pool of the base model: the modules shipped with the package
(`pool/shipped/<model>/`, see pool/ship.py), else those built by `smartfed pool build-all`.

Starting a run never trains modules: a default pool that is neither shipped nor built is an error that
names the command that builds it.
"""

import hashlib
import json
from pathlib import Path

from torch import nn

from smartfed.errors import AdapterError
from smartfed.models import cache_dir
from smartfed.pool.expert_pool import ExpertPool
from smartfed.pool.sources import fetch_adapter

DEFAULT_SKILLS = ("zh", "math", "code", "instruct")  # the default pool: one module per skill
SHIPPED_POOLS = Path(__file__).parent / "shipped"  # package data: <model>/<skill>/ PEFT folders in bf16


def _pool_name(model: str) -> str:
    return Path(model).name.removesuffix(".gguf")


def default_pool_dir(model: str) -> Path:
    """Where `smartfed pool build-all` puts the default pool of `model` unless told otherwise."""
    return cache_dir() / "pools" / _pool_name(model)


def shipped_pool_dir(model: str) -> Path:
    """Where the package ships the default pool of `model`, if it ships one."""
    return SHIPPED_POOLS / _pool_name(model)


def default_pool_folders(model: str) -> list[Path]:
    """The default pool's adapter folders, shipped first, then built; an AdapterError naming the build command if neither is whole."""
    for root in (shipped_pool_dir(model), default_pool_dir(model)):
        folders = [root / skill for skill in DEFAULT_SKILLS]
        if all((f / "adapter_config.json").is_file() for f in folders):
            return folders
    root = default_pool_dir(model)
    missing = [skill for skill in DEFAULT_SKILLS if not (root / skill / "adapter_config.json").is_file()]
    raise AdapterError(f"the default pool of '{model}' is not shipped or built: expected modules {', '.join(DEFAULT_SKILLS)} in "
                       f"{shipped_pool_dir(model)} or {root}, missing {', '.join(missing)} in the latter; build it with "
                       f"`smartfed pool build-all --model {model}` (or give adapter folders with --set pool.adapters=[...])")


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def adapters_digest(folders: list[Path]) -> str:
    """sha256 over every adapter's config and weights, in order: what the decomposed pool is a function of."""
    digest = hashlib.sha256()
    for folder in folders:
        for name in ADAPTER_FILES:
            path = folder / name
            if path.is_file():
                digest.update(f"{len(folders)}:{name}:{path.stat().st_size}:".encode())
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()


def resolve_pool_file(adapters: tuple[str, ...], model_name: str, model: nn.Module) -> Path:
    """The pool as one safetensors file: given, or decomposed from adapters (folders or `hf:` sources)
    and cached under the content hash of their configs and weights (another folder of the same name,
    or an edited alpha, makes a new pool file; the hash and the sources are kept in its metadata)."""
    if len(adapters) == 1 and adapters[0].endswith(".safetensors"):
        if not Path(adapters[0]).is_file():
            raise AdapterError(f"pool file {adapters[0]}: not found")
        return Path(adapters[0])
    fetched = [fetch_adapter(a) for a in adapters]
    folders = [f.folder for f in fetched] if adapters else default_pool_folders(model_name)
    for folder in folders:
        try:
            if not folder.resolve(strict=True).is_dir():
                raise AdapterError(f"adapter folder {folder}: expected a folder, found a file")
        except (OSError, RuntimeError) as err:  # missing, or a symlink loop
            raise AdapterError(f"adapter folder {folder}: not found ({type(err).__name__}: {err})") from None
    digest = adapters_digest(folders)
    sources = json.dumps([{"source": f.source, "revision": f.revision} for f in fetched])
    # In the cache whoever's folders they are (never beside the adapters: the package's shipped folder is one), keyed
    # by content and, where given, by the sources the file's metadata records (the same modules from the hub or a
    # folder are two provenances, so two files).
    key = hashlib.sha256((digest + sources).encode()).hexdigest() if fetched else digest
    pool_file = default_pool_dir(model_name) / f"pool-{key[:20]}.safetensors"
    if not pool_file.is_file():
        ExpertPool.from_adapters(folders, model).save(pool_file, {"adapters_sha256": digest, "adapter_sources": sources})
    return pool_file
