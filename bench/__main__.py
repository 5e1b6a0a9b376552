"""`python -m bench all|NAME...`: run benchmarks, print a table each, write bench/results/.

    uv run python -m bench all            # every benchmark, full size (< 15 min on 2 cores)
    uv run python -m bench broker search  # some of them
    uv run python -m bench all --quick    # small parameters: checks the benchmarks work

Each writes `bench/results/<name>.json` (figures, settings, machine, timestamp); after
`scaling` and `broker`, the plots in `bench/results/*.png` are redrawn from those files.
Quick runs write to `bench/results/quick/` so they never replace the published figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import RESULTS, Result, machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from a benchmark

# name → module whose `run(quick)` returns a Result; `all` runs them in this order.
BENCHMARKS = {
    "overhead": "bench.overhead",
    "scaling": "bench.scaling",
    "broker": "bench.broker",
    "broker_floor": "bench.broker_floor",
    "search": "bench.search",
    "memory": "bench.memory",
    "accuracy": "bench.wer",
    "models": "bench.models",
    "object_store": "bench.object_store",
    "diarization": "bench.diarization",
    "long-audio": "bench.long_audio",
    "long-audio-stack": "bench.long_audio_stack",
    "scale_out": "bench.scale_out",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=["all", *BENCHMARKS], metavar="all|NAME")
    parser.add_argument("--quick", action="store_true", help="small parameters, results/quick/")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="long-audio, long-audio-stack, diarization: the long file's length (60)",
    )
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if "all" in args.names else list(dict.fromkeys(args.names))
    directory = RESULTS / "quick" if args.quick else RESULTS
    info = machine()
    print(
        f"machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB, "
        f"load {info['load_average']}",
        flush=True,
    )
    started = time.perf_counter()
    failed = []
    for name in names:
        run: Callable[[bool], Result] = importlib.import_module(BENCHMARKS[name]).run
        if name in ("long-audio", "long-audio-stack", "diarization") and args.minutes is not None:
            minutes = args.minutes

            def run(quick: bool, _run: Any = run, _minutes: float = minutes) -> Result:
                return _run(quick, minutes=_minutes)  # type: ignore[no-any-return]

        print(f"-- {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = run(args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"!! {name} failed: {exc!r}", flush=True)
            continue
        result.seconds = time.perf_counter() - t0
        path = result.write(directory)
        print(result.table(), flush=True)
        print(f"   ({result.seconds:.0f} s; {path.relative_to(RESULTS.parent.parent)})", flush=True)
        if name in ("scaling", "broker", "scale_out"):
            from bench.plots import draw

            for png in draw(directory):
                print(f"   plot: {png.relative_to(RESULTS.parent.parent)}", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
