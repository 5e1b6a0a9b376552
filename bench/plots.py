"""The README's plots, drawn from bench/results/*.json: throughput vs workers, latency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def draw(directory: Path) -> list[Path]:
    """Redraw whichever plots have their results; return the files written."""
    written = []
    scaling = _load(directory, "scaling")
    if scaling is not None:
        runs = scaling["figures"]["runs"]
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [r["label"] for r in runs]
        rates = [r["audio_s_per_wall_s"] for r in runs]
        bars = ax.bar(labels, rates, color=["#888888"] + ["#3b75af"] * (len(runs) - 1))
        ax.bar_label(bars, fmt="%.2f")
        ax.set_ylabel("audio seconds per wall second")
        ax.set_title(f"Throughput vs transcriber processes ({scaling['machine']['nproc']} CPUs)")
        fig.tight_layout()
        path = directory / "scaling.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    broker = _load(directory, "broker")
    if broker is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for phase in broker["figures"]["phases"]:
            if phase.get("round", 1) != 1 and phase.get("path") != "http":
                continue  # one round of each side: the others look the same, and crowd it
            offered = phase["offered_jobs_per_s"]
            label = "saturation" if offered is None else f"{offered:.0f} jobs/s offered"
            label = f"{phase.get('side', 'scribe')}, {label}"
            if phase.get("path") == "http":
                # Latency from the 202: a job can be indexed before its client reads the 202.
                label = f"HTTP uploads, {label}, from the 202"
            values = sorted(phase["latencies_ms"])
            fraction = [(i + 1) / len(values) for i in range(len(values))]
            ax.plot(values, fraction, label=f"{label} (p99 {phase['p99_ms']:.0f} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("publish (or 202) → indexed latency, ms (log)")
        ax.set_ylabel("fraction of jobs")
        ax.set_title("Control-plane latency, instant engine: Scribe and Celery + Redis")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="center right", fontsize=7)
        fig.tight_layout()
        path = directory / "latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    scale_out = _load(directory, "scale_out")
    if scale_out is not None:
        runs = scale_out["figures"]["runs"]
        fig, ax = plt.subplots(figsize=(6, 4))
        replicas = [r["replicas"] for r in runs]
        rates = [r["jobs_per_s"] for r in runs]
        ax.plot(replicas, rates, marker="o", label="measured")
        ax.plot(replicas, [rates[0] * n for n in replicas], "--", color="#999999", label="linear")
        for n, rate in zip(replicas, rates, strict=True):
            ax.annotate(f"{rate:.0f}", (n, rate), textcoords="offset points", xytext=(0, 6))
        ax.set_xticks(replicas)
        ax.set_xlabel("indexer and transcriber replicas (each)")
        ax.set_ylabel("jobs/s, publish → indexed")
        ax.set_title(f"Control-plane scale-out ({scale_out['machine']['nproc']} CPUs)")
        ax.legend()
        fig.tight_layout()
        path = directory / "scale_out.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
