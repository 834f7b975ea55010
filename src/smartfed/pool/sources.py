"""Where adapters come from: a local PEFT folder, or a hub repository `hf:org/name[@revision]`
(safetensors only, the resolved commit recorded), optionally listed in a library manifest whose
sha256 every fetched file must match. Either may end in `#sha256=<hex>`, the sha256 its
adapter_model.safetensors must have (`pinned` writes it: `smartfed pool select` prints its picks so,
and a run over them refuses other weights).

A manifest is TOML, one `[[module]]` table per LoRA module:

    [[module]]
    name = "zh"
    source = "hf:someone/llama2-7b-zh-lora@3f2a1c0"   # or a local folder
    skills = ["zh"]
    license = "apache-2.0"
    sha256 = "..."                                     # of adapter_model.safetensors
"""

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from smartfed.errors import AdapterError

HUB = "hf:"
HUB_FILES = ["adapter_config.json", "adapter_model.safetensors", "README.md"]  # never pickles from a hub
SHA256 = re.compile(r"[0-9a-f]{64}")
_PIN = re.compile(r"#sha256=(.*)\Z", re.IGNORECASE | re.DOTALL)  # from the first `#sha256=` on: 64 hex digits (source_pin)


@dataclass(frozen=True)
class AdapterSource:
    folder: Path
    source: str  # as given
    revision: str | None = None  # the hub commit it resolved to


def fetch_adapter(spec: str) -> AdapterSource:
    """A local folder as it is; `hf:org/name[@revision]` downloaded (or taken from the hub cache); either
    refused unless its weights have the sha256 a `#sha256=<hex>` pin states."""
    pin = source_pin(spec)
    fetched = _fetch(without_pin(spec), spec)
    if pin:
        weights = fetched.folder / "adapter_model.safetensors"
        found = file_sha256(weights) if weights.is_file() else "no file"
        if found != pin:
            raise AdapterError(f"adapter source {spec!r}: {weights} sha256 expected {pin}, found {found}")
    return fetched


def source_pin(spec: str) -> str | None:
    """The sha256 a source pins (lower case), None where it pins none; an AdapterError for a malformed pin."""
    match = _PIN.search(spec)
    if match is None:
        return None
    if not SHA256.fullmatch(match.group(1).lower()):
        raise AdapterError(f"adapter source {spec!r}: expected '#sha256=' and 64 hex digits at its end, found {match.group(0)!r}")
    return match.group(1).lower()


def without_pin(spec: str) -> str:
    """The source without its `#sha256=<hex>` pin: where it is."""
    return _PIN.sub("", spec)


def pinned(source: str, revision: str | None, sha256: str) -> str:
    """`source` at the hub commit it resolved to (where it is a hub source) with its weights' sha256 pinned."""
    location = without_pin(source)
    if location.startswith(HUB) and revision:
        location = f"{location.partition('@')[0]}@{revision}"
    return f"{location}#sha256={sha256}"


def _fetch(location: str, spec: str) -> AdapterSource:
    if not location.startswith(HUB):
        return AdapterSource(Path(location), spec)
    repo, _, revision = location.removeprefix(HUB).partition("@")
    if repo.count("/") != 1:
        raise AdapterError(f"adapter source {spec!r}: expected hf:<org>/<name>[@<revision>]")
    from huggingface_hub import snapshot_download  # here: only hub sources need it

    try:
        folder = Path(snapshot_download(repo_id=repo, revision=revision or None, allow_patterns=HUB_FILES))
    except Exception as err:  # network, auth, missing repo or revision
        try:  # a snapshot already in the hub cache (the client looks there offline for a branch, not for a commit)
            folder = Path(snapshot_download(repo_id=repo, revision=revision or None, allow_patterns=HUB_FILES, local_files_only=True))
        except Exception:
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
    if not SHA256.fullmatch(module.sha256):
        raise AdapterError(f"manifest module '{module.name}': sha256 expected 64 hex digits, found {module.sha256!r}")
    try:
        own = source_pin(module.source)
        if own is not None and own != module.sha256:
            raise AdapterError(f"source {module.source!r} pins sha256 {own}, expected the manifest's {module.sha256}")
        return fetch_adapter(pinned(module.source, None, module.sha256))
    except AdapterError as err:
        raise AdapterError(f"manifest module '{module.name}': {err}") from None
