"""The run folder: config, metrics.jsonl, router checkpoints, summary.json; every write atomic.

Order within a round: the metrics line is written before the round's checkpoint. A run killed in
between resumes from the previous checkpoint and the orphan metrics line is dropped, so the folder
never holds a torn file or a line for a round that has no checkpoint.
"""

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from smartfed.errors import SmartFedError
from smartfed.fed.config import RunConfig, load_config, provenance
from smartfed.io import atomic_path, atomic_write_text

CONFIG, METRICS, SUMMARY, CHECKPOINTS = "config.toml", "metrics.jsonl", "summary.json", "checkpoints"


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(self, config: RunConfig) -> None:
        if (self.path / METRICS).exists():
            raise FileExistsError(f"{self.path} already holds a run: use `smartfed run --resume {self.path}` or another name")
        self.path.mkdir(parents=True, exist_ok=True)
        header = "".join(f"# {k} = {v}\n" for k, v in provenance().items())
        atomic_write_text(self.path / CONFIG, header + config.to_toml())
        atomic_write_text(self.path / METRICS, "")

    def config(self) -> RunConfig:
        return load_config(str(self.path / CONFIG))

    def metrics(self) -> list[dict]:
        path = self.path / METRICS
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def append_metrics(self, line: dict) -> None:
        text = (self.path / METRICS).read_text() + json.dumps(line) + "\n"
        atomic_write_text(self.path / METRICS, text)

    def save_checkpoint(self, round_: int, state: dict[str, torch.Tensor], quotas: dict[str, int], scores: dict[str, float] | None,
                        prefix: str = "round") -> None:
        """Trained state plus what the next round needs: its quotas and the smoothed EEQA scores.
        (`prefix="client"`: the final state of one client of a `local` run, numbered by client.)"""
        folder = self.path / CHECKPOINTS
        folder.mkdir(exist_ok=True)
        metadata = {"round": str(round_), "quotas": json.dumps(quotas), "scores": json.dumps(scores)}
        with atomic_path(folder / f"{prefix}-{round_:04d}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=metadata)

    def last_checkpoint(self) -> tuple[int, dict[str, torch.Tensor], dict[str, int], dict[str, float] | None] | None:
        """(round, router state, quotas, scores) of the newest checkpoint; drops metrics lines after it."""
        files = sorted((self.path / CHECKPOINTS).glob("round-*.safetensors"))
        if not files:
            return None
        with safe_open(files[-1], framework="pt") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
        round_ = int(meta["round"])
        kept = [m for m in self.metrics() if m["round"] <= round_]
        atomic_write_text(self.path / METRICS, "".join(json.dumps(m) + "\n" for m in kept))
        return round_, state, json.loads(meta["quotas"]), json.loads(meta["scores"])

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / SUMMARY, json.dumps(summary, indent=1))

    def summary(self) -> dict:
        path = self.path / SUMMARY
        if not path.is_file():
            raise SmartFedError(f"{path}: no summary; the run did not finish (resume it with `smartfed run --resume {self.path}`)")
        return json.loads(path.read_text())
