"""The run configuration: typed sections, validated once by pydantic, saved into the run folder.

Read from TOML (`smartfed run CONFIG.toml`) with `--set section.key=value` overrides. An unknown key,
a key of the old flat format, or a bad value is a ConfigError naming the key, the expected and the
found value. `smartfed run --help-config` lists every key.
"""

import subprocess
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smartfed import __version__
from smartfed.data.compositions import COMPOSITIONS
from smartfed.errors import ConfigError
from smartfed.eval.suites import SUITES
from smartfed.methods import METHODS
from smartfed.models import DEFAULT_MODEL, DEVICES, DTYPES, QUANTIZED
from smartfed.quota import IMPORTANCE_KINDS
from smartfed.routers import GATES, ROUTER_INITS, ROUTER_KINDS, arrow_initialisable


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class RunSection(Section):
    name: str = Field("default", description="run folder name under out_dir (no path separators)")
    out_dir: str = Field("runs", description="where run folders go")
    method: str = Field("smartfed", description=f"one of {', '.join(METHODS)}")
    seed: int = Field(0, description="seeds partitions, client sampling, initial state and local training")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"expected a plain folder name (no '/', not '.' or '..', not empty), found {name!r}")
        return name


class ModelSection(Section):
    name: str = Field(DEFAULT_MODEL, description="base model: name, .gguf, folder or hub id")
    device: str = Field("auto", description="auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps")
    dtype: str = Field("float32", description=f"the base model's weights: one of {', '.join((*DTYPES, *QUANTIZED))} (4bit/8bit: bitsandbytes; routers keep fp32)")


class PoolSection(Section):
    adapters: tuple[str, ...] = Field((), description="adapter folders or one pool .safetensors; empty: the default pool")

    @field_validator("adapters", mode="before")
    @classmethod
    def _list_to_tuple(cls, value):
        return tuple(value) if isinstance(value, list) else value


class RouterSection(Section):
    kind: str = Field("linear", description=f"smartfed and local: one of {', '.join(ROUTER_KINDS)}")
    top_k: int = Field(2, ge=1, description="experts per token per matrix (with EEQA: the average, K = top_k * J)")
    init_std: float = Field(0.01, ge=0, description="std of the routers' random initial weights")
    rank: int = Field(4, ge=1, description="lowrank router: rank q of U V")
    # gate and init: the lowest dev loss of `smartfed tune zh+math`'s 20 routing trials (docs/tuning/zh+math)
    gate: str = Field("scaled", description=f"gate over the top-k logits: one of {', '.join(GATES)} (routers/gates.py)")
    output_scale: bool = Field(False, description="a learned scale per matrix on the routed update, starting at 1")
    sparse: bool | Literal["auto"] = Field(False, description="compute only the k kept experts per token (linear and lowrank routers): "
                                                            "true, false, or auto (where M >= 128 k, where it measured faster on CPU)")
    init: str = Field("auto", description=f"router start: random; arrow (Arrow's zero-shot choice; for {', '.join(arrow_initialisable())}); "
                                          "auto: arrow where the router kind can start there, else random")


class EeqaSection(Section):
    enabled: bool = Field(True, description="smartfed: elastic quotas; false: every matrix uses router.top_k")
    importance: str = Field("relative_norm", description=f"one of {', '.join(IMPORTANCE_KINDS)}")
    k_min: int = Field(1, ge=1, description="fewest experts a matrix may get")
    realloc_every: int = Field(1, ge=1, description="re-allocate quotas every R rounds")
    smoothing: float = Field(0.5, ge=0, lt=1, description="weight of the previous scores in the moving average")
    device_budgets: dict[int, float] = Field({}, description="client -> k_avg for devices with a smaller budget than top_k")

    @field_validator("device_budgets", mode="before")
    @classmethod
    def _table_keys(cls, value):
        if isinstance(value, dict):  # TOML table keys are strings
            return {int(k) if isinstance(k, str) and k.isdigit() else k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value


class DataSection(Section):
    composition: str = Field("zh+math", description=f"one of {', '.join(COMPOSITIONS)}")
    partition: str = Field("iid", description="iid | dirichlet:<by>:<alpha> | pathological:<by>:<k> | natural:<by>")
    fraction: float = Field(1.0, gt=0, le=1, description="share of each client's data used (data-fraction sweeps)")
    dir: str = Field("", description="data folder; empty: $SMARTFED_DATA or ../shared/data")


class FederationSection(Section):
    num_clients: int = Field(10, ge=1, description="clients in the federation")
    clients_per_round: int = Field(5, ge=1, description="clients sampled each round")
    min_clients: int = Field(2, ge=1, description="a round fails if fewer updates than this are accepted")
    rounds: int = Field(3, ge=1, description="federated rounds")
    client_timeout_s: float = Field(0.0, ge=0, description="drop a client whose update takes longer (0: no limit)")


class TrainingSection(Section):
    local_steps: int = Field(4, ge=1, description="optimizer steps per client per round")
    batch_size: int = Field(4, ge=1, description="examples per local step")
    max_length: int = Field(256, ge=1, description="tokens per example (prompt + answer)")
    lr: float = Field(0.0, ge=0, lt=1, description="learning rate (AdamW) of what clients train; 0: the method's own rate, "
                                                   "tuned on the dev split (Method.lr, docs/tuning)")
    gradient_checkpointing: bool = Field(False, description="recompute the base model's activations in backward: less memory, more compute")


class EvalSection(Section):
    every: int = Field(1, ge=1, description="held-out loss every N rounds (and after the last)")
    examples: int = Field(48, ge=1, description="held-out examples scored after the last round (the reported loss)")
    curve_examples: int = Field(0, ge=0, description="held-out examples scored at round 0 and the rounds in between (the loss curve: "
                                                     "the first N of eval.examples, which the last round also reports); 0: all of them")
    score_examples: int = Field(0, ge=0, description="after the last round, score the benchmark suites on this many items each (0: skip)")
    suites: list[str] = Field([], description="benchmark suites scored (smartfed.eval.suites); empty: the composition's own")
    max_new_tokens: int = Field(0, ge=0, description="at most this many generated tokens per benchmark item, every suite "
                                                     "(0: each suite's own limit, smartfed.eval.suites)")
    require_isolation: bool = Field(False, description="refuse to score code benchmarks without namespaces and an unprivileged uid")
    split: str = Field("heldout", description="what the per-round loss is measured on: heldout (reported numbers) or dev (choosing settings)")


class EnergySection(Section):
    cpu_watts: float = Field(7.5, ge=0, description="watts per busy CPU core (docs/energy.md)")
    uplink_j_per_byte: float = Field(5.57e-6, ge=0, description="radio joules per byte sent (LTE, docs/energy.md)")
    downlink_j_per_byte: float = Field(1.45e-6, ge=0, description="radio joules per byte received (LTE, docs/energy.md)")


class LoraSection(Section):
    rank: int = Field(8, ge=1, description="fedit, ffa-lora: rank of the fresh LoRA (targets: the pool's)")
    alpha: float = Field(16.0, gt=0, description="fedit, ffa-lora: LoRA alpha")


class LorahubSection(Section):
    search_budget: int = Field(12, ge=1, description="lorahub: loss evaluations of the gradient-free search per client round")


AGGREGATION_RULES = ("fedavg", "clipped-fedavg", "trimmed-mean", "median")  # fed/server.py implements them


class AggregationSection(Section):
    rule: str = Field("fedavg", description="fedavg | clipped-fedavg | trimmed-mean | median (fed/server.py; robust rules also take the median of EEQA scores)")
    max_update_norm: float = Field(100.0, gt=0, description="reject an update that moves the state by more than this x max(||global state||, 1)")
    max_num_examples: int = Field(1_000_000, ge=1, description="reject a client that claims more training examples than this")
    max_importance: float = Field(1e4, gt=0, description="reject EEQA scores above this")
    trim_fraction: float = Field(0.2, ge=0, lt=0.5, description="trimmed-mean: share cut from each end per coordinate (needs >= 1/share clients a round to cut any)")
    weight_cap: float = Field(2.0, gt=0, description="clipped-fedavg: a client's weight is at most this x the round's median example count")


class ArrowSection(Section):
    top_k: int = Field(3, ge=1, description="arrow: modules mixed per token (peft's ArrowConfig default)")
    temperature: float = Field(1.0, gt=0, description="arrow: softmax temperature over the kept scores")


# Sections that only some methods read (Method.config_sections: lora, lorahub, arrow). A run of any other method
# ignores them: resuming it and grouping its seeds compare what the run's method reads (RunConfig.in_effect), so
# a changed LoRAHub search budget is no other method's new setting.
METHOD_SECTIONS = frozenset(section for method in METHODS.values() for section in method.config_sections)


class RunConfig(Section):
    run: RunSection = RunSection()
    model: ModelSection = ModelSection()
    pool: PoolSection = PoolSection()
    router: RouterSection = RouterSection()
    eeqa: EeqaSection = EeqaSection()
    data: DataSection = DataSection()
    federation: FederationSection = FederationSection()
    training: TrainingSection = TrainingSection()
    eval: EvalSection = EvalSection()
    energy: EnergySection = EnergySection()
    lora: LoraSection = LoraSection()
    lorahub: LorahubSection = LorahubSection()
    arrow: ArrowSection = ArrowSection()
    aggregation: AggregationSection = AggregationSection()

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        _one_of("run.method", self.run.method, tuple(METHODS))
        _one_of("router.kind", self.router.kind, tuple(k for k in ROUTER_KINDS if k != "module-arrow"))  # module-arrow: the arrow method's, trains nothing
        if METHODS[self.run.method].folds_into_base and self.aggregation.rule != "fedavg":
            raise ConfigError(f"config key 'aggregation.rule': expected fedavg with run.method = {self.run.method!r} "
                              f"(it stacks every update exactly), found {self.aggregation.rule!r}")
        _one_of("data.composition", self.data.composition, tuple(COMPOSITIONS))
        _one_of("eeqa.importance", self.eeqa.importance, IMPORTANCE_KINDS)
        _one_of("eval.split", self.eval.split, ("heldout", "dev"))
        for suite in self.eval.suites:
            _one_of("eval.suites", suite, tuple(SUITES))
        _one_of("model.dtype", self.model.dtype, (*DTYPES, *QUANTIZED))
        if self.model.device.split(":")[0] not in DEVICES:
            raise ConfigError(f"config key 'model.device': expected one of {', '.join(DEVICES)} or cuda:N, found {self.model.device!r}")
        _one_of("aggregation.rule", self.aggregation.rule, AGGREGATION_RULES)
        _one_of("router.gate", self.router.gate, tuple(GATES))
        _one_of("router.init", self.router.init, ("auto", *ROUTER_INITS))
        if self.router.init == "arrow":
            _one_of("router.kind (with router.init = 'arrow')", self.router.kind, arrow_initialisable())
        fed = self.federation
        _at_most("federation.clients_per_round", fed.clients_per_round, fed.num_clients, "federation.num_clients")
        _at_most("federation.min_clients", fed.min_clients, fed.clients_per_round, "federation.clients_per_round")
        _at_most("eeqa.k_min", self.eeqa.k_min, self.router.top_k, "router.top_k")
        _at_most("eval.curve_examples", self.eval.curve_examples, self.eval.examples, "eval.examples")
        for client, k_avg in self.eeqa.device_budgets.items():
            if not 0 <= client < fed.num_clients or not 0 < k_avg <= self.router.top_k:
                raise ConfigError(f"config key 'eeqa.device_budgets': expected clients in [0, {fed.num_clients}) with "
                                  f"0 < k_avg <= router.top_k={self.router.top_k}, found {client} = {k_avg}")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json"))

    def flat(self) -> dict[str, Any]:
        """{"section.key": value} for every key."""
        return {f"{section}.{key}": value for section, values in self.model_dump().items() for key, value in values.items()}

    def in_effect(self) -> dict[str, Any]:
        """flat() without the sections only other methods read (METHOD_SECTIONS): every key that can change what
        this run computes."""
        own = METHODS[self.run.method].config_sections
        return {key: value for key, value in self.flat().items() if (section := key.split(".")[0]) not in METHOD_SECTIONS or section in own}

    def with_values(self, values: dict[str, Any]) -> "RunConfig":
        """A new config with some "section.key" values changed, validated again."""
        return _validate(_nested(self.model_dump(), values.items()), "")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"config key '{key}': expected one of {', '.join(allowed)}, found {value!r}")


def _at_most(key: str, value: int, bound: int, bound_key: str) -> None:
    if value > bound:
        raise ConfigError(f"config key '{key}': expected <= {bound_key}={bound}, found {value}")


SECTIONS: dict[str, type[Section]] = {name: f.annotation for name, f in RunConfig.model_fields.items()}

# The flat keys of smartfed 0.1 and where they live now: refused with this hint on input; run folders
# written by 0.1 are read through it (`migrate_flat`).
FLAT_KEYS = {
    "name": "run.name", "out_dir": "run.out_dir", "method": "run.method", "seed": "run.seed", "model": "model.name",
    "pool": "pool.adapters", "router": "router.kind", "top_k": "router.top_k", "eeqa": "eeqa.enabled",
    "importance": "eeqa.importance", "k_min": "eeqa.k_min", "realloc_every": "eeqa.realloc_every", "smoothing": "eeqa.smoothing",
    "weak_clients": "eeqa.device_budgets", "composition": "data.composition", "partition": "data.partition",
    "data_fraction": "data.fraction", "data_dir": "data.dir", "num_clients": "federation.num_clients",
    "clients_per_round": "federation.clients_per_round", "min_clients": "federation.min_clients", "rounds": "federation.rounds",
    "client_timeout_s": "federation.client_timeout_s", "local_steps": "training.local_steps", "batch_size": "training.batch_size",
    "max_length": "training.max_length", "lr": "training.lr", "eval_every": "eval.every", "eval_examples": "eval.examples",
    "score_examples": "eval.score_examples", "cpu_watts": "energy.cpu_watts", "uplink_j_per_byte": "energy.uplink_j_per_byte",
    "downlink_j_per_byte": "energy.downlink_j_per_byte", "lora_rank": "lora.rank", "lora_alpha": "lora.alpha",
    "search_budget": "lorahub.search_budget",
}

EXPECTED = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str", "tuple_type": "a list of str",
            "dict_type": "a table", "finite_number": "a finite number", "model_type": "a table of keys"}


def _describe(error: dict) -> str:
    ctx = error.get("ctx", {})
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than": "< {lt}", "less_than_equal": "<= {le}"}
    if error["type"] in bounds:
        return bounds[error["type"]].format(**ctx)
    if error["type"] == "value_error":
        return str(ctx.get("error", error["msg"]))
    return EXPECTED.get(error["type"], error["msg"])


def _config_error(err: ValidationError, where: str) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"] if part != "[key]")
    if first["type"] == "extra_forbidden":
        section = key.split(".")[0]
        known = sorted(SECTIONS) if "." not in key else sorted(SECTIONS[section].model_fields) if section in SECTIONS else []
        return ConfigError(f"unknown config key '{key}'{where}: expected one of {', '.join(known)}")
    expected = _describe(first)
    if expected.startswith("expected"):
        return ConfigError(f"config key '{key}'{where}: {expected}")
    return ConfigError(f"config key '{key}'{where}: expected {expected}, found {first.get('input')!r}")


def _validate(values: dict, where: str) -> RunConfig:
    flat = [key for key, value in values.items() if key in FLAT_KEYS and not isinstance(value, dict)]
    if flat:
        raise ConfigError(f"config key '{flat[0]}'{where} is now '{FLAT_KEYS[flat[0]]}' (configs have sections since smartfed 0.2)")
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        raise _config_error(err, where) from None


def _nested(values: dict, items) -> dict:
    """`values` with every ("section.key", value) of `items` set in its section."""
    out = {section: dict(keys) if isinstance(keys, dict) else keys for section, keys in values.items()}
    for dotted, value in items:
        section, _, key = dotted.partition(".")
        if not key:
            hint = f" is now '{FLAT_KEYS[section]}'" if section in FLAT_KEYS else ": expected section.key"
            raise ConfigError(f"config key '{dotted}'{hint}")
        if not isinstance(out.setdefault(section, {}), dict):
            raise ConfigError(f"config key '{section}': expected a table of keys, found {out[section]!r}")
        out[section][key] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, object]:
    """`--set section.key=value` items as {"section.key": value}; values are TOML, else bare strings."""
    return dict(_parse_override(item) for item in items)


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set expected section.key=value, found {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string: --set router.kind=static
    return key.strip(), value


def read_toml(path: str | Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: expected UTF-8 text, found bytes that are not ({err.reason} at byte {err.start})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err


def load_config(path: str | None = None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Defaults, then `base` ({"section.key": value}), the TOML file, then `--set` overrides; validated once."""
    values = _nested({}, (base or {}).items())
    for section, keys in (read_toml(path) if path else {}).items():
        if isinstance(keys, dict) and isinstance(values.get(section), dict):
            values[section] |= keys
        else:
            values[section] = keys
    values = _nested(values, parse_overrides(overrides).items())
    return _validate(values, f" in {path}" if path else "")


def migrate_flat(values: dict) -> dict:
    """A smartfed 0.1 flat config (a run folder's config.toml) in sections."""
    items = []
    for key, value in values.items():
        if key not in FLAT_KEYS:
            raise ConfigError(f"unknown config key '{key}' of the flat format: expected one of {', '.join(FLAT_KEYS)}")
        if key == "weak_clients":
            try:
                value = {int(c): float(k) for c, k in (item.split(":") for item in str(value).replace(" ", "").split(",") if item)}
            except ValueError as err:
                raise ConfigError(f"config key 'weak_clients' of the flat format: expected 'client:k_avg,...', found {value!r}") from err
        items.append((FLAT_KEYS[key], value))
    return _nested({}, items)


def help_lines() -> list[str]:
    """`[section]` headers and `key = default  # help` for every key."""
    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {field.default!r}  # {field.description}" for key, field in cls.model_fields.items()]
    return lines


def _git(folder: Path, *args: str) -> str | None:
    """git's output in `folder`; None where git fails (no repository, no git, a timeout)."""
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(package: Path = Path(__file__).parent) -> dict[str, str]:
    """Package version and git revision of the code that ran, and whether the package's files (`package`, this
    one's folder) differed from that revision (edited or new files: the revision alone does not say what ran)."""
    rev = _git(package, "rev-parse", "HEAD")
    if not rev:
        return {"smartfed_version": __version__, "git_revision": "unknown"}
    changed = _git(package, "status", "--porcelain", "--", ".")
    n = None if changed is None else len(changed.splitlines())
    return {"smartfed_version": __version__, "git_revision": rev,
            "git_package_changes": "unknown" if n is None else "none" if n == 0 else
                                   f"{n} file{'s differ' if n > 1 else ' differs'} from that revision"}
