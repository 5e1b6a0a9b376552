"""What every benchmark shares: the machine, results files, tables, /proc probes, isolation.

A benchmark returns a `Result`; `python -m bench` prints its table and writes
`bench/results/<name>.json` with the figures, the settings, the machine and a timestamp.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tests.support.servers import LOCAL_AMQP, LOCAL_POSTGRES, PostgresServer, RabbitServer

RESULTS: Final = Path(__file__).resolve().parent / "results"
MANIFEST: Final = Path(__file__).resolve().parents[2] / "shared" / "audio" / "manifest.tsv"
AMQP_URL: Final = os.environ.get("SCRIBE_BENCH_AMQP_URL", LOCAL_AMQP)
ADMIN_DATABASE_URL: Final = os.environ.get("SCRIBE_BENCH_DATABASE_URL", LOCAL_POSTGRES)
TICKS: Final = os.sysconf("SC_CLK_TCK")
# With no key configured, ingest accepts its public development key for the default tenant.
API_HEADERS: Final = {"Authorization": "Bearer dev-insecure-key"}


# --- the machine -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures came from: CPUs, CPU model, memory, load when the run began."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- results -------------------------------------------------------------------------------


@dataclass
class Result:
    """One benchmark's outcome: a table for people, figures for files and plots."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        cells = [[_cell(v) for v in row] for row in self.rows]
        widths = [
            max([len(c)] + [len(r[i]) for r in cells if i < len(r)])
            for i, c in enumerate(self.columns)
        ]
        # Numbers right-aligned, words (and the first column) left-aligned.
        numeric = [
            i > 0 and all(isinstance(r[i], int | float | None) for r in self.rows if i < len(r))
            for i in range(len(self.columns))
        ]
        lines = [f"== {self.name}: {self.title}"]
        for row in [self.columns, *cells]:
            pairs = enumerate(zip(row, widths, strict=False))
            padded = [v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in pairs]
            lines.append("  ".join(padded))
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def write(self, directory: Path = RESULTS) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        document = {
            "name": self.name,
            "title": self.title,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(self.seconds, 1),
            "machine": machine(),
            "settings": self.settings,
            "figures": self.figures,
            "table": {"columns": self.columns, "rows": self.rows},
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"  # rows hold figures already rounded to what they mean
    return "-" if value is None else str(value)


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a real sample)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# --- audio ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    path: Path
    category: str
    reference: str
    duration: float

    @property
    def split(self) -> str:
        return self.category.removeprefix("librispeech_")


def manifest_clips(manifest: Path = MANIFEST) -> list[Clip]:
    """Every row of `../shared/audio/manifest.tsv`, in manifest order."""
    with manifest.open(newline="") as f:
        return [
            Clip(
                path=manifest.parent / row["filename"],
                category=row["category"],
                reference=row["transcript"],
                duration=float(row["duration_s"]),
            )
            for row in csv.DictReader(f, delimiter="\t")
        ]


def librispeech(manifest: Path = MANIFEST) -> list[Clip]:
    return [c for c in manifest_clips(manifest) if c.category.startswith("librispeech")]


def clip_named(filename: str, manifest: Path = MANIFEST) -> Clip:
    for clip in manifest_clips(manifest):
        if clip.path.name == filename:
            return clip
    raise SystemExit(f"{filename} is not in {manifest}")


# --- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid: int, key: str) -> int:
    """A `/proc/<pid>/status` memory field (VmRSS, VmHWM) in KiB; 0 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pids_named(comm: str) -> list[int]:
    """Processes whose command name is `comm` (e.g. RabbitMQ's `beam.smp`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
    return found


class RssSampler(threading.Thread):
    """Samples the VmRSS of some processes every few milliseconds; keeps each one's peak."""

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak_kib = dict.fromkeys(pids, 0)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name, pid in self.pids.items():
                self.peak_kib[name] = max(self.peak_kib[name], status_kib(pid, "VmRSS"))
            time.sleep(self.interval)

    def stop(self) -> dict[str, float]:
        """Stop sampling; each process's peak in MiB."""
        self._halt.set()
        self.join()
        return {name: kib / 1024 for name, kib in self.peak_kib.items()}


# --- isolation: a throwaway vhost and database ---------------------------------------------


@contextlib.contextmanager
def throwaway_vhost(prefix: str = "scribe-bench") -> Iterator[str]:
    """A fresh RabbitMQ vhost (its AMQP URL), deleted afterwards."""
    with RabbitServer.at(AMQP_URL).fresh_vhost(prefix) as url:
        yield url


@contextlib.contextmanager
def throwaway_database(prefix: str = "scribe_bench") -> Iterator[str]:
    """A fresh PostgreSQL database (its URL), dropped afterwards."""
    with PostgresServer(ADMIN_DATABASE_URL).fresh_database(prefix) as url:
        yield url
