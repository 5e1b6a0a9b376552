"""The ETA of a long job from its done chunks: what a user polling the job sees."""

from __future__ import annotations

import pytest

from indexer.chunks import ChunkProgress


def progress(*, done: int, count: int, workers: int, in_flight: tuple[float, ...]) -> ChunkProgress:
    # 90 s chunks at a real-time factor of 0.1: 9 s of work each.
    return ChunkProgress(
        chunk_count=count,
        done=done,
        done_seconds=90.0 * done,
        audio_seconds=90.0 * done,
        processing_seconds=9.0 * done,
        segments=10 * done,
        workers=workers,
        latest=None,
        in_flight_seconds=in_flight,
    )


def test_the_chunk_in_another_worker_s_hand_is_counted_as_partly_done() -> None:
    # Two workers, four chunks: the second just finished its chunk while the first has
    # spent 8 of its 9 s on the last one. 1 s is left, not 9 s shared by two (4.5 s).
    state = progress(done=3, count=4, workers=2, in_flight=(8.0, 0.0))
    assert state.eta_seconds(360.0) == pytest.approx(1.0)


def test_no_more_workers_share_the_rest_than_chunks_are_left() -> None:
    state = progress(done=3, count=4, workers=3, in_flight=(0.0,))
    assert state.eta_seconds(360.0) == pytest.approx(9.0)


def test_many_chunks_left_are_shared_by_every_worker_at_work() -> None:
    state = progress(done=2, count=10, workers=2, in_flight=(4.0, 0.0))
    assert state.eta_seconds(900.0) == pytest.approx((8 * 9.0 - 4.0) / 2)


def test_no_estimate_before_any_audio_is_measured() -> None:
    state = progress(done=0, count=4, workers=0, in_flight=())
    assert state.eta_seconds(360.0) is None


def test_a_worker_over_its_estimate_never_makes_the_eta_negative() -> None:
    state = progress(done=3, count=4, workers=2, in_flight=(30.0, 0.0))
    assert state.eta_seconds(360.0) == 0.0
