"""The run configuration: one typed, frozen object, validated once, saved into the run folder.

Read from TOML (`smartfed run CONFIG.toml`) with `--set key=value` overrides; an unknown key or a bad
value is an error that names the key, the expected and the found value.
"""

import subprocess
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from smartfed.data.compositions import COMPOSITIONS
from smartfed.errors import SmartFedError
from smartfed.models import DEFAULT_MODEL
from smartfed.routers import ROUTER_KINDS

# smartfed: routers over rank-1 experts of the pool (the paper). The baselines share the runner:
# fedit / ffa-lora train a fresh LoRA (ffa-lora: A frozen at its random init), lorahub mixes whole
# pool modules with weights found gradient-free, module-router learns a per-token gate over whole
# modules, local trains each client alone.
METHODS = ("smartfed", "fedit", "ffa-lora", "lorahub", "module-router", "local")


class ConfigError(SmartFedError):
    """A run configuration key is unknown or has a bad value."""


@dataclass(frozen=True)
class RunConfig:
    name: str = field(default="default", metadata={"help": "run folder name under out_dir"})
    out_dir: str = field(default="runs", metadata={"help": "where run folders go"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "base model: name, .gguf, folder or hub id"})
    pool: tuple[str, ...] = field(default=(), metadata={"help": "adapter folders or one pool .safetensors; empty: the default pool"})
    method: str = field(default="smartfed", metadata={"help": f"one of {METHODS}"})
    router: str = field(default="linear", metadata={"help": f"smartfed and local: one of {ROUTER_KINDS}"})
    top_k: int = field(default=2, metadata={"help": "experts per token per matrix"})
    eeqa: bool = field(default=True, metadata={"help": "smartfed: elastic quotas (EEQA); false: every matrix uses top_k"})
    importance: str = field(default="relative_norm", metadata={"help": "EEQA importance: relative_norm | grad_norm"})
    k_min: int = field(default=1, metadata={"help": "EEQA: fewest experts a matrix may get"})
    realloc_every: int = field(default=1, metadata={"help": "EEQA: re-allocate quotas every R rounds"})
    smoothing: float = field(default=0.5, metadata={"help": "EEQA: weight of the previous scores in the moving average"})
    weak_clients: str = field(default="", metadata={"help": "device budgets: 'client:k_avg,...' for clients with a smaller budget than top_k"})
    composition: str = field(default="zh+math", metadata={"help": f"one of {tuple(COMPOSITIONS)}"})
    partition: str = field(default="iid", metadata={"help": "iid | dirichlet:<by>:<alpha> | pathological:<by>:<k> | natural:<by>"})
    num_clients: int = field(default=10, metadata={"help": "clients in the federation"})
    clients_per_round: int = field(default=5, metadata={"help": "clients sampled each round"})
    min_clients: int = field(default=2, metadata={"help": "a round fails if fewer updates than this are accepted"})
    rounds: int = field(default=3, metadata={"help": "federated rounds"})
    local_steps: int = field(default=4, metadata={"help": "optimizer steps per client per round"})
    batch_size: int = field(default=4, metadata={"help": "examples per local step"})
    max_length: int = field(default=256, metadata={"help": "tokens per example (prompt + answer)"})
    lr: float = field(default=5e-3, metadata={"help": "learning rate (AdamW) of what clients train"})
    lora_rank: int = field(default=8, metadata={"help": "fedit / ffa-lora: rank of the fresh LoRA (targets: the pool's)"})
    lora_alpha: float = field(default=16.0, metadata={"help": "fedit / ffa-lora: LoRA alpha"})
    search_budget: int = field(default=12, metadata={"help": "lorahub: loss evaluations of the gradient-free search per client round"})
    seed: int = field(default=0, metadata={"help": "seeds partitions, client sampling and local training"})
    eval_every: int = field(default=1, metadata={"help": "held-out loss every N rounds (and after the last)"})
    eval_examples: int = field(default=48, metadata={"help": "held-out examples scored"})
    client_timeout_s: float = field(default=0.0, metadata={"help": "drop a client whose update takes longer (0: no limit)"})
    score_examples: int = field(default=0, metadata={"help": "after the last round, score the composition's benchmark suites on this many items each (0: skip)"})
    cpu_watts: float = field(default=7.5, metadata={"help": "energy: watts per busy CPU core (docs/energy.md)"})
    uplink_j_per_byte: float = field(default=5.57e-6, metadata={"help": "energy: radio joules per byte sent (LTE, docs/energy.md)"})
    downlink_j_per_byte: float = field(default=1.45e-6, metadata={"help": "energy: radio joules per byte received (LTE, docs/energy.md)"})
    data_fraction: float = field(default=1.0, metadata={"help": "share of each client's data used (data-fraction sweeps)"})
    data_dir: str = field(default="", metadata={"help": "data folder; empty: $SMARTFED_DATA or ../shared/data"})

    def __post_init__(self):
        for f in fields(self):
            value, expected = getattr(self, f.name), type(f.default)  # every default has the field's type
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if expected is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = tuple(value)
            if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
                raise ConfigError(f"config key '{f.name}': expected {expected.__name__}, found {value!r}")
            object.__setattr__(self, f.name, value)
        positive = ("lora_rank", "search_budget", "k_min", "realloc_every", "top_k", "num_clients", "clients_per_round", "min_clients", "rounds", "local_steps", "batch_size", "max_length", "eval_every", "eval_examples")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': expected >= 1, found {getattr(self, key)}")
        if self.method not in METHODS:
            raise ConfigError(f"config key 'method': expected one of {METHODS}, found {self.method!r}")
        if self.router not in ROUTER_KINDS:
            raise ConfigError(f"config key 'router': expected one of {ROUTER_KINDS}, found {self.router!r}")
        if self.composition not in COMPOSITIONS:
            raise ConfigError(f"config key 'composition': expected one of {tuple(COMPOSITIONS)}, found {self.composition!r}")
        if self.clients_per_round > self.num_clients:
            raise ConfigError(f"config key 'clients_per_round': expected <= num_clients={self.num_clients}, found {self.clients_per_round}")
        if self.min_clients > self.clients_per_round:
            raise ConfigError(f"config key 'min_clients': expected <= clients_per_round={self.clients_per_round}, found {self.min_clients}")
        if self.importance not in ("relative_norm", "grad_norm"):
            raise ConfigError(f"config key 'importance': expected relative_norm or grad_norm, found {self.importance!r}")
        if not 0 <= self.smoothing < 1:
            raise ConfigError(f"config key 'smoothing': expected in [0, 1), found {self.smoothing}")
        if self.k_min > self.top_k:
            raise ConfigError(f"config key 'k_min': expected <= top_k={self.top_k}, found {self.k_min}")
        self.device_budgets  # parses weak_clients, raising ConfigError if malformed
        if not 0 < self.lr < 1:
            raise ConfigError(f"config key 'lr': expected in (0, 1), found {self.lr}")
        if self.score_examples < 0:
            raise ConfigError(f"config key 'score_examples': expected >= 0, found {self.score_examples}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"config key 'lora_alpha': expected > 0, found {self.lora_alpha}")
        for key in ("cpu_watts", "uplink_j_per_byte", "downlink_j_per_byte"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': expected >= 0, found {getattr(self, key)}")
        if not 0 < self.data_fraction <= 1:
            raise ConfigError(f"config key 'data_fraction': expected in (0, 1], found {self.data_fraction}")

    @property
    def routed_with(self) -> str | None:
        """The router kind of a method that routes pool experts; None for a fresh LoRA."""
        return {"smartfed": self.router, "local": self.router, "lorahub": "static", "module-router": "module"}.get(self.method)

    @property
    def uses_eeqa(self) -> bool:
        """EEQA applies where per-matrix top-k quotas mean something: smartfed's own routers."""
        return self.eeqa and self.method in ("smartfed", "local") and self.router not in ("static", "module")

    @property
    def device_budgets(self) -> dict[int, float]:
        """client -> k_avg for the clients that announce a smaller budget (weak devices)."""
        budgets = {}
        for item in filter(None, self.weak_clients.replace(" ", "").split(",")):
            try:
                client, k_avg = item.split(":")
                budgets[int(client)] = float(k_avg)
            except ValueError as err:
                raise ConfigError(f"config key 'weak_clients': expected 'client:k_avg,...', found {self.weak_clients!r}") from err
            if not 0 <= int(client) < self.num_clients or not 0 < float(k_avg) <= self.top_k:
                raise ConfigError(f"config key 'weak_clients': expected clients in [0, {self.num_clients}) with 0 < k_avg <= top_k, found {item!r}")
        return budgets

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_toml(self) -> str:
        lines = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                rendered = "[" + ", ".join(_toml_string(v) for v in value) + "]"
            elif isinstance(value, str):
                rendered = _toml_string(value)
            elif isinstance(value, bool):
                rendered = str(value).lower()
            else:
                rendered = repr(value)
            lines.append(f"{f.name} = {rendered}")
        return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set expected key=value, found {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string: --set router=static
    return key.strip(), value


def load_config(path: str | None = None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Defaults, then the TOML file (or `base`), then `--set` overrides; validated once."""
    values: dict = dict(base or {})
    if path:
        try:
            values.update(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: config file not found") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from err
    values.update(_parse_override(item) for item in overrides)
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(values.keys() - known)
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'{f' in {path}' if path else ''}: expected one of {sorted(known)}")
    return RunConfig(**values)


def provenance() -> dict[str, str]:
    """Package version and git revision of the code that ran."""
    from smartfed import __version__

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    return {"smartfed_version": __version__, "git_revision": rev or "unknown"}

