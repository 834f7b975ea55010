"""Where adapters come from: a local PEFT folder, or a hub repository `hf:org/name[@revision]`
(safetensors only, the resolved commit recorded), optionally listed in a library manifest whose
sha256 every fetched file must match.

A manifest is TOML, one `[[module]]` table per LoRA module:

    [[module]]
    name = "zh"
    source = "hf:someone/llama2-7b-zh-lora@3f2a1c0"   # or a local folder
    skills = ["zh"]
    license = "apache-2.0"
    sha256 = "..."                                     # of adapter_model.safetensors
"""

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from smartfed.errors import AdapterError

HUB = "hf:"
HUB_FILES = ["adapter_config.json", "adapter_model.safetensors", "README.md"]  # never pickles from a hub


@dataclass(frozen=True)
class AdapterSource:
    folder: Path
    source: str  # as given
    revision: str | None = None  # the hub commit it resolved to


def fetch_adapter(spec: str) -> AdapterSource:
    """A local folder as it is; `hf:org/name[@revision]` downloaded (or taken from the hub cache)."""
    if not spec.startswith(HUB):
        return AdapterSource(Path(spec), spec)
    repo, _, revision = spec.removeprefix(HUB).partition("@")
    if repo.count("/") != 1:
        raise AdapterError(f"adapter source {spec!r}: expected hf:<org>/<name>[@<revision>]")
    from huggingface_hub import snapshot_download  # here: only hub sources need it

    try:
        folder = Path(snapshot_download(repo_id=repo, revision=revision or None, allow_patterns=HUB_FILES))
    except Exception as err:  # network, auth, missing repo or revision
        raise AdapterError(f"adapter source {spec!r}: could not fetch ({type(err).__name__}: {err})") from None
    if not (folder / "adapter_model.safetensors").is_file():
        raise AdapterError(f"adapter source {spec!r}: expected adapter_model.safetensors (hub adapters load as safetensors only), found none")
    return AdapterSource(folder, spec, folder.name)  # the hub cache keeps snapshots under their commit hash


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ManifestModule:
    name: str
    source: str
    sha256: str
    skills: tuple[str, ...] = ()
    license: str = "unknown"
    extra: dict = field(default_factory=dict)


def read_manifest(path: str | Path) -> list[ManifestModule]:
    """The modules a manifest lists; every entry needs name, source and sha256."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise AdapterError(f"manifest {path}: cannot be read ({err})") from None
    entries = data.get("module", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise AdapterError(f"manifest {path}: expected [[module]] tables, found {type(entries).__name__}")
    modules = []
    for i, entry in enumerate(entries):
        missing = [k for k in ("name", "source", "sha256") if not isinstance(entry.get(k), str)]
        if missing:
            raise AdapterError(f"manifest {path}: module {i} expected string keys name, source, sha256, missing {', '.join(missing)}")
        skills = entry.get("skills", [])
        if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
            raise AdapterError(f"manifest {path}: module {i} key 'skills' expected a list of strings, found {skills!r}")
        modules.append(ManifestModule(entry["name"], entry["source"], entry["sha256"].lower(), tuple(skills), str(entry.get("license", "unknown"))))
    if not modules:
        raise AdapterError(f"manifest {path}: expected at least one [[module]], found none")
    return modules


def fetch_checked(module: ManifestModule) -> AdapterSource:
    """Fetch a manifest module and refuse it unless its weights have the sha256 the manifest states."""
    fetched = fetch_adapter(module.source)
    weights = fetched.folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterError(f"manifest module '{module.name}': expected {weights}, found none (manifests pin safetensors)")
    found = file_sha256(weights)
    if found != module.sha256:
        raise AdapterError(f"manifest module '{module.name}': {weights} sha256 expected {module.sha256}, found {found}")
    return fetched
