"""A job in the worker's process costs no more page faults than in a bare process.

What a user noticed: with glibc's mmap threshold fixed at 1 MiB, every CTranslate2 buffer
over 1 MiB was mapped and unmapped again at each decoding step, its pages faulted in
afresh: 6x the minor page faults, half the CPU time in the kernel, jobs 1.26-1.51x slower
than plain faster-whisper. Page faults are counted, not timed: the counts barely move with
the machine's load, where times would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.transcriber.tests.festival import synthesize

pytestmark = pytest.mark.slow

# Runs `transcriber.main.main` as `scribe-transcriber` does (settings from the environment,
# logging, the process's allocator setup), with `serve` replaced by two jobs on the worker's
# engine, each on its own thread and followed by what the worker runs after a job. Or, as
# "plain", the same two jobs in a bare process. Writes the minor faults of each job.
JOBS = """
import json, resource, sys, threading
from pathlib import Path

mode, clip, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])


def jobs(after):
    from transcriber.engine import EngineRequest, FasterWhisperEngine
    from transcriber.settings import TranscriberSettings

    engine = FasterWhisperEngine(TranscriberSettings(), max_duration_seconds=600)
    request = EngineRequest(language="en", word_timestamps=False)
    faults, words = [], []
    for _ in range(2):
        def job():
            result = engine.transcribe(
                clip, request, on_segment=lambda *_: None, cancelled=threading.Event()
            )
            words.append(len(result.text.split()))
            after()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        thread = threading.Thread(target=job)
        thread.start()
        thread.join()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    out.write_text(json.dumps({"faults": faults, "words": words}))


if mode == "plain":
    jobs(lambda: None)
else:
    import transcriber.main
    from transcriber.allocator import release_freed_memory

    async def serve(_shared, _settings):
        jobs(release_freed_memory)
        return True

    transcriber.main.serve = serve
    transcriber.main.main([])
"""

SCRIPT = (
    "Each job allocates large buffers while the model decodes the audio, window after "
    "window, and the worker must give them back without paying for it at every step. "
    "The quick brown fox jumps over the lazy dog, and the meeting starts at noon. "
    "After lunch we will read the figures again, one by one, and write down what changed."
)


def faults_of_two_jobs(mode: str, clip: Path, tmp_path: Path) -> tuple[list[int], list[int]]:
    """Minor page faults of each job, and the words each transcript has."""
    out = tmp_path / f"{mode}.json"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SCRIBE_TRANSCRIBER_CPU_THREADS": "2",
        "SCRIBE_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-c", JOBS, mode, str(clip), str(out)],
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    return [int(n) for n in result["faults"]], [int(n) for n in result["words"]]


def test_a_job_in_the_worker_faults_no_more_pages_than_plain(tmp_path: Path) -> None:
    clip = synthesize(SCRIPT)
    plain, plain_words = faults_of_two_jobs("plain", clip, tmp_path)
    worker, worker_words = faults_of_two_jobs("worker", clip, tmp_path)
    assert worker_words == plain_words
    # Measured (two jobs, 59 words): bare 159-179k faults, the worker about 161k; with the
    # threshold fixed at 1 MiB 312-314k (1.75-1.98x). The first job's vary least, the
    # second's depend on when glibc raises its threshold: the sum is what is compared.
    assert sum(worker) <= 1.3 * sum(plain), (worker, plain)
