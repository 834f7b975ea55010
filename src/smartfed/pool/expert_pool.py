"""The expert pool: every LoRA module split along its rank into frozen rank-1 experts.

For an adapted matrix j with modules n = 1..N targeting it, the pool stacks every rank-1 term:
    A_j = [A_1; ...; A_N]      (M_j, d_in)      M_j = sum_n r_n
    B_j = [B_1, ..., B_N]      (d_out, M_j)
    scale_j[i] = s_n of the module expert i comes from
so that E_i(x) = scale_j[i] * B_j[:, i] * (A_j[i, :] @ x) and module n's LoRA output is the sum of its
experts. The pool saves to one safetensors file that loads memory-mapped (copy-on-write): the routed layers
keep A a view of it (every process on a machine shares one copy, for an fp32 CPU model) and fold the
scale into a copy of B once per process, which every simulated client there shares.
"""

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from smartfed.errors import AdapterError, PoolFileError
from smartfed.io import atomic_path
from smartfed.pool.adapter import LoraAdapter, linear_shape, read_adapter

POOL_FORMAT = "smartfed-pool-v1"
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "I64": torch.int64}
_FIELDS = ("A", "B", "scale", "source", "rank_index")


@dataclass(frozen=True)
class ModuleInfo:
    """Provenance of one LoRA module in the pool."""

    name: str
    path: str
    base_model: str | None
    r: int
    lora_alpha: float
    use_rslora: bool


@dataclass(frozen=True)
class MatrixExperts:
    """The rank-1 experts of one adapted matrix."""

    A: torch.Tensor  # (M, d_in)   stacked down-projections
    B: torch.Tensor  # (d_out, M)  stacked up-projections
    scale: torch.Tensor  # (M,)    alpha/r (or alpha/sqrt(r)) of each expert's module
    source: torch.Tensor  # (M,) int32  index into ExpertPool.modules
    rank_index: torch.Tensor  # (M,) int32  which rank of its module the expert is

    @property
    def num_experts(self) -> int:
        return self.A.shape[0]

    @property
    def d_in(self) -> int:
        return self.A.shape[1]

    @property
    def d_out(self) -> int:
        return self.B.shape[0]


class ExpertPool:
    """Rank-1 experts of N LoRA modules, per adapted matrix of one base model."""

    def __init__(self, modules: list[ModuleInfo], matrices: dict[str, MatrixExperts]):
        self.modules = tuple(modules)
        self.matrices = dict(matrices)

    def __repr__(self) -> str:
        sizes = sorted({m.num_experts for m in self.matrices.values()})
        return f"ExpertPool({len(self.modules)} modules, {len(self.matrices)} matrices, experts per matrix {sizes})"

    @property
    def num_experts(self) -> int:
        return sum(m.num_experts for m in self.matrices.values())

    @classmethod
    def from_adapters(cls, paths: list[str | Path], model: nn.Module) -> "ExpertPool":
        """Read PEFT LoRA adapter folders, check them against `model`, and decompose them."""
        if not paths:
            raise AdapterError("expected at least one adapter folder, found none")
        names = _unique_names([Path(p).resolve().name for p in paths])
        adapters = [read_adapter(path, model, name) for path, name in zip(paths, names)]
        return cls.from_lora(adapters, model)

    @classmethod
    def from_lora(cls, adapters: list[LoraAdapter], model: nn.Module) -> "ExpertPool":
        modules = [ModuleInfo(a.name, a.path, a.base_model, a.r, a.lora_alpha, a.use_rslora) for a in adapters]
        matrices = {}
        for name in (n for n, _ in model.named_modules()):  # model order: deterministic, reads like the model
            parts = [(i, a.matrices[name]) for i, a in enumerate(adapters) if name in a.matrices]
            if not parts:
                continue
            matrices[name] = MatrixExperts(
                A=torch.cat([m.A for _, m in parts], dim=0).contiguous(),  # (M, d_in)
                B=torch.cat([m.B for _, m in parts], dim=1).contiguous(),  # (d_out, M)
                scale=torch.cat([torch.full((m.A.shape[0],), m.scale) for _, m in parts]),  # (M,)
                source=torch.cat([torch.full((m.A.shape[0],), i, dtype=torch.int32) for i, m in parts]),
                rank_index=torch.cat([torch.arange(m.A.shape[0], dtype=torch.int32) for _, m in parts]),
            )
        return cls(modules, matrices)

    def check_fits(self, model: nn.Module, where: str = "pool") -> None:
        """Raise PoolFileError unless every matrix names a linear layer of `model` with matching shape."""
        modules = dict(model.named_modules())
        for name, experts in self.matrices.items():
            if name not in modules:
                raise PoolFileError(f"{where}: matrix '{name}' expected in the base model, found no such module")
            shape = linear_shape(modules[name])
            if shape != (experts.d_in, experts.d_out):
                raise PoolFileError(
                    f"{where}: matrix '{name}' expected (d_in, d_out) = {(experts.d_in, experts.d_out)}, "
                    f"found {shape} in the base model"
                )

    def save(self, path: str | Path, extra_metadata: dict[str, str] | None = None) -> None:
        """Write the pool to one safetensors file, atomically (`extra_metadata`: provenance such as a content hash)."""
        tensors = {f"{name}.{field}": getattr(m, field).contiguous() for name, m in self.matrices.items() for field in _FIELDS}
        metadata = {
            "format": POOL_FORMAT,
            "modules": json.dumps([vars(m) for m in self.modules]),
            "matrices": json.dumps(list(self.matrices)),
        } | (extra_metadata or {})
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "ExpertPool":
        """Load a pool file memory-mapped: tensors are views of the page cache, shared, never copied."""
        tensors, metadata = _mmap_safetensors(Path(path))
        if metadata.get("format") != POOL_FORMAT:
            raise PoolFileError(f"{path}: metadata 'format' expected '{POOL_FORMAT}', found {metadata.get('format')!r}")
        try:
            modules = [ModuleInfo(**m) for m in json.loads(metadata["modules"])]
            names = json.loads(metadata["matrices"])
            matrices = {n: MatrixExperts(**{f: tensors[f"{n}.{f}"] for f in _FIELDS}) for n in names}
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise PoolFileError(f"{path}: expected a complete {POOL_FORMAT} file, missing or malformed entry {err}") from err
        for n, m in matrices.items():
            M = m.num_experts
            if m.B.shape[1] != M or any(t.shape != (M,) for t in (m.scale, m.source, m.rank_index)):
                raise PoolFileError(f"{path}: matrix '{n}' expected {M} experts in every field, found inconsistent shapes")
        return cls(modules, matrices)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _mmap_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Zero-copy read of a safetensors file: each tensor is a view into one private (copy-on-write) mmap."""
    try:
        with open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as err:
        raise PoolFileError(f"{path}: cannot be opened as a pool file ({err})") from err
    try:
        (header_len,) = struct.unpack("<Q", buffer[:8])
        header = json.loads(buffer[8 : 8 + header_len])
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PoolFileError(f"{path}: expected a safetensors header, found corrupt bytes ({err})") from err
    metadata = header.pop("__metadata__", {}) or {}
    data_start = 8 + header_len
    tensors = {}
    for key, info in header.items():
        dtype = _DTYPES.get(info.get("dtype"))
        begin, end = info["data_offsets"]
        if dtype is None or data_start + end > len(buffer):
            raise PoolFileError(f"{path}: tensor '{key}' expected a known dtype within the file, found {info}")
        count = (end - begin) // dtype.itemsize
        flat = torch.frombuffer(buffer, dtype=dtype, count=count, offset=data_start + begin) if count else torch.empty(0, dtype=dtype)
        tensors[key] = flat.view(info["shape"])
    return tensors, metadata
