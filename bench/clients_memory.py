"""Peak memory of the in-process engine with 2 and with 50 clients, side by side in one run.

Each federation runs in a fresh `smartfed run` process (default model, default pool, zh+math): one
round in which every client trains (clients_per_round = num_clients), one local step each. The base
model and the memory-mapped pool are shared; per client only its data and a router state are held,
so the peak should barely move. Target: peak(50) <= 1.1 x peak(2).

    python bench/clients_memory.py        # ~5 min on 2 CPU cores once the default pool exists
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SMARTFED = Path(sys.executable).parent / "smartfed"


def peak_rss_mb(num_clients: int, out_dir: str) -> float:
    settings = [f"federation.num_clients={num_clients}", f"federation.clients_per_round={num_clients}",
                f"federation.min_clients={num_clients}", "federation.rounds=1", "training.local_steps=1", "training.batch_size=2",
                "eval.examples=8", f"run.name=clients-{num_clients}", f"run.out_dir={out_dir}"]
    command = [str(SMARTFED), "run", *[a for s in settings for a in ("--set", s)]]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {status}")
    return usage.ru_maxrss / 1024  # KiB -> MiB


def main() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        peaks = {n: peak_rss_mb(n, out_dir) for n in (2, 50)}
    print("| clients (all train in the round) | peak RSS (MB) | vs 2 clients |")
    print("|---:|---:|---:|")
    for n, peak in peaks.items():
        print(f"| {n} | {peak:.0f} | {peak / peaks[2]:.3f}x |")


if __name__ == "__main__":
    main()
