"""The diarization bench's ceiling: what an engine deciding once per block can score."""

from __future__ import annotations

import numpy as np

from bench.diarization import agreement, block_ceiling
from transcriber.diarization import frames_to_turns


def test_block_ceiling_is_the_truth_decided_by_its_majority_per_block() -> None:
    # 0.1 s blocks: L for 6 frames then R for 4 in each; the last 5 frames are silence.
    truth = np.array([0] * 6 + [1] * 4 + [1] * 7 + [0] * 3 + [0] * 5, dtype=np.int64)
    speech = np.array([True] * 20 + [False] * 5)
    assert block_ceiling(truth, speech, 1) == 1.0
    assert block_ceiling(truth, speech, 10) == 13 / 20  # 6 of the first block, 7 of the next
    assert block_ceiling(truth, speech, truth.size) == 11 / 20  # one label: R, 11 of 20


def test_one_label_ceiling_is_what_one_speaker_for_everything_scores() -> None:
    truth = np.array([0] * 30 + [1] * 12 + [0] * 8, dtype=np.int64)
    speech = np.ones(truth.size, dtype=bool)
    turns = frames_to_turns(np.zeros(truth.size, dtype=np.int64), 0.01)
    assert agreement(turns, truth, speech) == block_ceiling(truth, speech, truth.size) == 38 / 50
