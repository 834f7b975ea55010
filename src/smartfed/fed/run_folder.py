"""The run folder: config.toml, metrics.jsonl, checkpoints, summary.json; every write atomic.

Order within a round: the metrics line is written before the round's checkpoint. A run killed in
between resumes from the previous checkpoint and the orphan metrics line is dropped, so the folder
never holds a torn file or a line for a round that has no checkpoint.

One process writes a run folder at a time (`RunFolder.writing`): a second one, e.g. another sweep
worker or a `--resume` of a run still going, gets RunBusy instead of interleaving its rounds.
"""

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import save_file

from smartfed.config import RunConfig, load_config, migrate_flat, provenance, read_toml
from smartfed.errors import AdapterError, ConfigError, RunBusy, SmartFedError
from smartfed.fed.records import RoundRecord, Summary
from smartfed.io import atomic_path, atomic_write_text
from smartfed.pool.build import CARD
from smartfed.pool.resolve import adapters_digest, default_pool_folders
from smartfed.pool.sources import without_pin

CONFIG, METRICS, SUMMARY, CHECKPOINTS = "config.toml", "metrics.jsonl", "summary.json", "checkpoints"
# What a resume may change: how long the run goes on, and how it is evaluated.
RESUMABLE_KEYS = ("federation.rounds", "federation.client_timeout_s", "eval.every", "eval.score_examples", "eval.suites",
                  "eval.max_new_tokens")


LOCATION_KEYS = ("run.out_dir", "run.name")  # where a run folder is, not what it trained
WHERE_IT_RAN = ("model.device", "data.dir")  # where a run computed and read its data: a finished run stands as it ran
_HELD: dict[Path, int] = {}  # run folders this process writes -> how many `writing` blocks hold each


_NO_FOLDER_FLOCK = (errno.EBADF, errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)  # e.g. NFS, Lustre without -o flock


def _locked(path: Path, flags: int) -> int | None:
    """An fd of `path` holding an exclusive flock; None when another process holds one."""
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException as err:
        os.close(fd)
        if isinstance(err, BlockingIOError):
            return None
        raise
    return fd


def pool_folders(config: RunConfig) -> list[Path] | None:
    """`config`'s pool as adapter folders: given, or the default pool; None where the default pool is neither shipped nor built."""
    if config.pool.adapters:
        return [Path(without_pin(a)).expanduser() for a in config.pool.adapters]
    try:
        return default_pool_folders(config.model.name)
    except AdapterError:
        return None


# What makes a module what it is, not the bytes it came out as: its LoRA shape (adapter_config.json) and, for a
# module smartfed built, the build's settings and data (its card). peft's version and where its base model was are not.
_RECIPE_KEYS = ("peft_type", "r", "lora_alpha", "target_modules", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern")
_NOT_RECIPE = ("out", "data_dir", "checkpoint_every")


def _module_recipe(folder: Path) -> dict:
    adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    recipe = {key: adapter.get(key) for key in _RECIPE_KEYS}
    if (folder / CARD).is_file():
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
        recipe["build"] = {k: v for k, v in card.get("config", {}).items() if k not in _NOT_RECIPE}
        recipe["data"] = card.get("data", {}).get("sources")
    return recipe


def _pool_recipes(config: RunConfig) -> str | None:
    """sha256 of the recipes of `config`'s pool modules (`_module_recipe`), where they are local folders that can be
    read here; None otherwise. Two builds of one recipe have other bytes (float rounding) and the same recipes."""
    folders = pool_folders(config)
    try:
        recipes = [_module_recipe(f) for f in folders or []]
    except (OSError, ValueError, AttributeError):  # missing or malformed JSON: no recipe to compare
        return None
    return hashlib.sha256(json.dumps(recipes, sort_keys=True).encode()).hexdigest() if folders else None


def _pool_digest(config: RunConfig) -> str | None:
    """The adapters_sha256 of `config`'s pool where it is local adapter folders that can be read here; None otherwise
    (hub sources, a pool file, a default pool neither shipped nor built)."""
    folders = pool_folders(config)
    if folders is None or not all((f / "adapter_config.json").is_file() for f in folders):
        return None
    return adapters_digest(folders)


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def writing(self):
        """Hold the folder for this process (it is created if missing); RunBusy if another process holds it.
        An exclusive flock on the folder itself: the kernel drops it when the process ends, however it ends,
        so a killed run leaves no stale lock, and no lock file lands in a committed run folder. Where a
        file system cannot flock a folder (NFS emulates flock with fcntl locks, which need a file open for
        writing), a hidden `.<name>.lock` file beside the folder is locked instead. Re-entrant within the
        process (a sweep holds the folder, then runs it). Deleting a held folder defeats the lock."""
        key = self.path.resolve()
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            fd = _locked(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            if err.errno not in _NO_FOLDER_FLOCK:
                raise
            fd = _locked(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT)
        if fd is None:
            raise RunBusy(f"{self.path}: another process is writing this run folder; expected it free "
                          f"(wait for that run, or stop it)")
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            os.close(fd)  # drops the lock

    def create(self, config: RunConfig, notes: dict[str, str] | None = None) -> None:
        """Start the folder: config.toml with provenance (and `notes`, e.g. the pool's content hash) as comments."""
        if (self.path / METRICS).exists():
            raise FileExistsError(f"{self.path} already holds a run: use `smartfed run --resume {self.path}` or another name")
        self.path.mkdir(parents=True, exist_ok=True)
        recipes = _pool_recipes(config)
        notes = (notes or {}) | ({"pool_recipes_sha256": recipes} if recipes else {})
        header = "".join(f"# {k} = {v}\n" for k, v in (provenance() | notes).items())
        atomic_write_text(self.path / CONFIG, header + config.to_toml())
        atomic_write_text(self.path / METRICS, "")

    def changed_settings(self, config: RunConfig, *, finished: bool = False) -> dict[str, tuple]:
        """{key: (saved value, value in `config`)} where `config` differs from the run's config.toml; ConfigError
        where a difference is not in RESUMABLE_KEYS (that run trained something else). Where the folder is
        (run.out_dir, run.name) is no setting, nor another method's config section (RunConfig.in_effect), nor
        where the pool's adapter folders are: the pool is the bytes the header's adapters_sha256 records (moved
        folders with the same bytes are the same pool, a module rebuilt in place with other bytes is another),
        where they can be read here. With `finished`, the same modules rebuilt with other bytes
        (`rebuilt_pool`) are no change where nothing else changed: a finished run stands for the build it ran
        over (going on with it, or rescoring it, would run over the other build: still a change), and so is where
        it ran (WHERE_IT_RAN: a seed run on a GPU machine is no other setting for a queue on the CPU)."""
        saved = self._saved().in_effect()
        ignored = (*LOCATION_KEYS, *WHERE_IT_RAN) if finished else LOCATION_KEYS
        changed = {key: (saved.get(key), value) for key, value in config.in_effect().items()
                   if saved.get(key) != value and key not in ignored}
        recorded, found = self.provenance().get("adapters_sha256"), _pool_digest(config)
        if recorded and found and recorded != found:
            changed["pool.adapters"] = (f"adapters_sha256 {recorded}", f"adapters_sha256 {found}")
        elif recorded and found and "pool.adapters" in changed:
            del changed["pool.adapters"]
        if finished and list(changed) == ["pool.adapters"] and self.rebuilt_pool(config):
            del changed["pool.adapters"]
        fixed = [key for key in changed if key not in RESUMABLE_KEYS]
        if fixed:
            raise ConfigError(f"{self.path / CONFIG}: an earlier run with other settings ({', '.join(fixed)}); expected "
                              f"{fixed[0]}={changed[fixed[0]][1]!r}, found {changed[fixed[0]][0]!r}: a resumed run keeps "
                              f"the settings it was trained with; use another folder")
        return changed

    def rebuilt_pool(self, config: RunConfig) -> tuple[str, str] | None:
        """(adapters_sha256 the run recorded, the one found here) where `config`'s pool is the run's modules rebuilt
        with other bytes: the same adapter folder names in order, and the same recipes (`_pool_recipes`; a run
        folder from before runs recorded them has the names alone). None where the bytes agree, either is
        unknown, or the modules are others."""
        header = self.provenance()
        recorded, found = header.get("adapters_sha256"), _pool_digest(config)
        if not recorded or not found or recorded == found:
            return None
        names = [[folder.name for folder in pool_folders(c) or []] for c in (self._saved(), config)]
        recipes = header.get("pool_recipes_sha256")
        return (recorded, found) if names[0] == names[1] and recipes in (None, _pool_recipes(config)) else None

    def update_config(self, config: RunConfig, notes: Sequence[str] = ()) -> None:
        """Record the settings a resume changed (RESUMABLE_KEYS; `smartfed run --resume --set`, or compare
        with new evaluation settings): config.toml holds the new values, its header keeps the first run's
        provenance and says what changed, what it was and which code resumed. The summary, made under the
        old settings, goes first: until the resumed run writes its own, the run is unfinished. Where the
        folder and its pool's folders are stays as first written (no other machine's paths come in), and so
        do the sections of other methods (the run never read them: recording new values would be a change
        the header does not name). `notes`: what else the resume changes that no key holds (the method's own
        learning rate moved), each said as a header line."""
        changed = self.changed_settings(config)
        if not changed and not notes:
            return
        (self.path / SUMMARY).unlink(missing_ok=True)
        saved = self._saved().flat()
        header = [line for line in (self.path / CONFIG).read_text().splitlines(keepends=True) if line.startswith("#")]
        header += [f"# resumed with {key} = {new!r} (was {old!r})\n" for key, (old, new) in changed.items()]
        header += [f"# {note}\n" for note in notes]
        code = provenance()
        header.append(f"# resumed at git_revision = {code['git_revision']}\n")
        header += [f"# resumed with git_package_changes = {code['git_package_changes']}\n"] if "git_package_changes" in code else []
        read = config.in_effect()
        unread = [key for key in saved if key not in read]
        kept = config.with_values({key: saved[key] for key in (*LOCATION_KEYS, "pool.adapters", *unread)})
        atomic_write_text(self.path / CONFIG, "".join(header) + kept.to_toml())

    def config(self) -> RunConfig:
        """The run's config, placed where the folder is now (run.out_dir and run.name: a moved or cloned
        folder resumes in place)."""
        here = Path(os.path.abspath(self.path))
        return self._saved().with_values({"run.out_dir": str(here.parent), "run.name": here.name})

    def _saved(self) -> RunConfig:
        """config.toml as written; a smartfed 0.1 run folder (flat keys) is read through `migrate_flat`."""
        path = self.path / CONFIG
        values = read_toml(path)
        if values and not any(isinstance(v, dict) for v in values.values()):
            return load_config(base={f"{s}.{k}": v for s, keys in migrate_flat(values).items() for k, v in keys.items()})
        return load_config(str(path))

    def _header(self) -> list[tuple[str, str]]:
        """The `# key = value` lines at the head of config.toml, in order (a resume adds lines: keys may repeat)."""
        lines = (self.path / CONFIG).read_text().splitlines()
        return [tuple(line[2:].split(" = ", 1)) for line in lines if line.startswith("# ") and " = " in line]

    def provenance(self) -> dict[str, str]:
        """The header's values (versions, the pool's content hash, ...), the last of a repeated key."""
        return dict(self._header())

    def devices(self) -> list[str]:
        """Where the run computed, in order: the `device` its header recorded at the start and each `resumed on
        device` after it. Empty for a run made before smartfed recorded it, and resumed there after, its start
        is the model.device it asked for (maybe `auto`, which names no machine)."""
        header = self._header()
        started = [value for key, value in header if key == "device"]
        resumed = [value for key, value in header if key == "resumed on device"]
        if resumed and not started:
            started = [self._saved().model.device]
        return started + resumed

    def metrics(self, drop_torn_tail: bool = False) -> list[RoundRecord]:
        """Every round's record. A line that is not a record is an error naming the file and line, except,
        with `drop_torn_tail`, a last line cut short by a kill (resume drops it: its round has no checkpoint)."""
        path = self.path / METRICS
        lines = [line for line in (path.read_text().splitlines() if path.exists() else []) if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(RoundRecord.model_validate_json(line))
            except ValidationError as err:
                if drop_torn_tail and number == len(lines):
                    break
                raise SmartFedError(f"{path}:{number}: expected a round record, found {line[:80]!r} ({err.errors()[0]['msg']})") from None
        return records

    def append_metrics(self, record: RoundRecord) -> None:
        self._write_metrics(self.metrics() + [record])

    def _write_metrics(self, records: list[RoundRecord]) -> None:
        atomic_write_text(self.path / METRICS, "".join(r.to_json() + "\n" for r in records))

    def save_checkpoint(self, round_: int, tensors: dict[str, torch.Tensor], metadata: dict[str, str], prefix: str = "round") -> None:
        """What the next round needs: the trained state(s) and, as metadata, quotas and EEQA scores.
        (`prefix="client"`: the final model of one client of a run whose clients keep their own.)"""
        folder = self.path / CHECKPOINTS
        folder.mkdir(exist_ok=True)
        with atomic_path(folder / f"{prefix}-{round_:04d}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"round": str(round_), **metadata})

    def last_checkpoint(self, log=print) -> tuple[int, dict[str, torch.Tensor], dict[str, str]] | None:
        """(round, tensors, metadata) of the newest intact checkpoint (a truncated or empty one, which only
        a copy or a disk fault can leave, is skipped and said); drops metrics lines after it."""
        for path in sorted((self.path / CHECKPOINTS).glob("round-*.safetensors"), reverse=True):
            try:
                with safe_open(path, framework="pt") as f:
                    metadata = f.metadata()
                    tensors = {k: f.get_tensor(k) for k in f.keys()}
                round_ = int(metadata["round"])
            except Exception as err:  # safetensors raises several kinds on a torn file
                log(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); resuming from the one before it")
                continue
            self._write_metrics([m for m in self.metrics(drop_torn_tail=True) if m.round <= round_])
            return round_, tensors, metadata
        return None

    def write_summary(self, summary: Summary) -> None:
        atomic_write_text(self.path / SUMMARY, json.dumps(summary.model_dump(exclude_none=True), indent=1))

    def summary(self) -> Summary:
        path = self.path / SUMMARY
        if not path.is_file():
            raise SmartFedError(f"{path}: no summary; the run did not finish (resume it with `smartfed run --resume {self.path}`)")
        try:
            return Summary.model_validate_json(path.read_text())
        except ValidationError as err:
            missing = [str(e["loc"][0]) for e in err.errors() if e["type"] == "missing"]
            what = f"missing {', '.join(missing)}" if missing else str(err.errors()[0]["msg"])
            raise SmartFedError(f"{path}: expected a summary with {', '.join(Summary.model_fields)}; {what} "
                                f"(a run made by an older smartfed, before the energy model: rerun it)") from None
