"""Split a composition's training examples across clients with flwr-datasets partitioners.

Schemes:
  iid                      uniform random split
  dirichlet:<by>:<alpha>   label skew over <by> ("source", "skill" or "language"), Dirichlet(alpha)
  pathological:<by>:<k>    each client holds only k values of <by>
  natural:<by>             one client per value of <by> (num_clients must equal their number)
"""

import math

from datasets import Dataset
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, NaturalIdPartitioner, PathologicalPartitioner

from smartfed.data.records import Example
from smartfed.data.sources import DataError

_KEYS = ("source", "skill", "language")


def _partitioner(scheme: str, num_clients: int, seed: int):
    kind, *args = scheme.split(":")
    if kind == "iid" and not args:
        return IidPartitioner(num_partitions=num_clients)
    if kind in ("dirichlet", "pathological") and len(args) == 2 and args[0] in _KEYS:
        _check_parameter(scheme, kind, args[1])
        if kind == "dirichlet":
            return DirichletPartitioner(num_partitions=num_clients, partition_by=args[0], alpha=float(args[1]),
                                        min_partition_size=1, self_balancing=True, seed=seed)
        return PathologicalPartitioner(num_partitions=num_clients, partition_by=args[0], num_classes_per_partition=int(args[1]), seed=seed)
    if kind == "natural" and len(args) == 1 and args[0] in _KEYS:
        return NaturalIdPartitioner(partition_by=args[0])
    raise DataError(f"partition scheme expected iid, dirichlet:<by>:<alpha>, pathological:<by>:<k> or natural:<by> "
                    f"with <by> in {_KEYS}, found {scheme!r}")


def _check_parameter(scheme: str, kind: str, raw: str) -> None:
    """dirichlet's alpha a finite number > 0, pathological's k an int >= 1."""
    try:
        value = float(raw) if kind == "dirichlet" else int(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        expected = "alpha a finite number > 0" if kind == "dirichlet" else "k an int >= 1"
        raise DataError(f"partition scheme {scheme!r}: {kind} expected {expected}, found {raw!r}")


def partition(examples: list[Example], scheme: str, num_clients: int, seed: int = 0) -> list[list[Example]]:
    """`num_clients` disjoint lists of examples covering `examples` (each client's private data)."""
    table = Dataset.from_dict({"row": list(range(len(examples))), **{k: [getattr(e, k) for e in examples] for k in _KEYS}})
    partitioner = _partitioner(scheme, num_clients, seed)
    partitioner.dataset = table
    if partitioner.num_partitions != num_clients:
        raise DataError(f"partition scheme {scheme!r} makes {partitioner.num_partitions} clients, expected num_clients={num_clients}")
    parts = [[examples[i] for i in partitioner.load_partition(c)["row"]] for c in range(num_clients)]
    if sum(map(len, parts)) != len(examples) or len({e.id for p in parts for e in p}) != len(examples):
        raise AssertionError("partitions must cover every example exactly once")
    return parts
