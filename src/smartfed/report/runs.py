"""`smartfed report`: a markdown table over run folders and PNG plots (held-out loss per round,
and the EEQA quota heatmap over adapted matrices and rounds)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from smartfed.fed.run_folder import RunFolder  # noqa: E402


def summary_table(run_dirs: list[Path]) -> str:
    lines = ["| run | router | EEQA | rounds | held-out loss start -> end | MB up | MB down | wall s |",
             "|---|---|---|---:|---|---:|---:|---:|"]
    for d in run_dirs:
        run = RunFolder(d)
        config, metrics = run.config(), run.metrics()
        losses = [m["heldout_loss"] for m in metrics if "heldout_loss" in m]
        last = metrics[-1]
        lines.append(f"| {d.name} | {config.router} | {'on' if config.eeqa else 'off'} | {last['round']} | "
                     f"{losses[0]:.4f} -> {losses[-1]:.4f} | {last['cumulative_bytes_up'] / 1e6:.2f} | "
                     f"{last['cumulative_bytes_down'] / 1e6:.2f} | {sum(m['wall_s'] for m in metrics):.0f} |")
    return "\n".join(lines)


def loss_plot(run_dirs: list[Path], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for d in run_dirs:
        points = [(m["round"], m["heldout_loss"]) for m in RunFolder(d).metrics() if "heldout_loss" in m]
        ax.plot(*zip(*points), marker="o", label=d.name)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out loss (NLL per answer token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def quota_heatmap(run_dir: Path, out: Path) -> Path:
    """Quotas k_j used in each round (columns) for each adapted matrix (rows, in model order)."""
    metrics = [m for m in RunFolder(run_dir).metrics() if m["round"] > 0]
    if not metrics:
        raise ValueError(f"{run_dir}: expected at least one finished round, found none")
    names = list(metrics[0]["quotas"])
    grid = np.array([[m["quotas"][n] for m in metrics] for n in names])  # (J, rounds)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * len(metrics), 2 + 0.12 * len(names)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(metrics)), [str(m["round"]) for m in metrics])
    step = max(1, len(names) // 40)
    ax.set_yticks(range(0, len(names), step), [n.removeprefix("model.") for n in names[::step]], fontsize=6)
    ax.set_xlabel("round")
    ax.set_title(f"{run_dir.name}: experts per matrix (k_j)")
    fig.colorbar(image, ax=ax, label="k_j")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(run_dirs: list[Path], out_dir: Path) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summary_table(run_dirs)
    plots = [loss_plot(run_dirs, out_dir / "heldout_loss.png")]
    plots += [quota_heatmap(d, out_dir / f"quotas-{d.name}.png") for d in run_dirs if RunFolder(d).config().eeqa]
    text = table + "\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    (out_dir / "report.md").write_text(text)
    return text
