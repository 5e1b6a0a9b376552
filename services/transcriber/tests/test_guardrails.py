"""The hallucination guards as pure functions: what they cut, what they leave alone."""

from __future__ import annotations

import pytest

from transcriber.guardrails import (
    HIGH_COMPRESSION,
    LOW_CONFIDENCE,
    NO_SPEECH,
    compression_ratio,
    cut_repetitions,
    is_non_speech,
    repeated_segments,
    segment_flags,
)


def test_a_one_word_loop_is_cut_to_one_word() -> None:
    cut = cut_repetitions("You " * 20)
    assert cut.text == "You"
    assert cut.removed_words == 19


def test_a_phrase_loop_keeps_the_text_around_it() -> None:
    text = "Hello there. " + "Thank you for watching. " * 6 + "Goodbye."
    cut = cut_repetitions(text)
    assert cut.text == "Hello there. Thank you for watching. Goodbye."
    assert cut.cut


def test_repeats_differing_in_case_and_punctuation_are_one_loop() -> None:
    assert cut_repetitions("you, You. YOU you! you").text == "you,"


def test_short_legitimate_repetition_stays() -> None:
    text = "No, no, no. I said the meeting is on Monday, Monday at nine."
    cut = cut_repetitions(text)
    assert cut.text == text
    assert not cut.cut


def test_ordinary_speech_is_untouched() -> None:
    text = "And so my fellow Americans ask not what your country can do for you"
    assert cut_repetitions(text).text == text


@pytest.mark.parametrize("max_repeats", [1, 2, 3])
def test_max_repeats_is_the_longest_run_kept(max_repeats: int) -> None:
    text = " ".join(["ha"] * max_repeats)
    assert cut_repetitions(text, max_repeats=max_repeats).text == text
    assert cut_repetitions(text + " ha", max_repeats=max_repeats).text == "ha"


def test_compression_ratio_is_high_for_loops_and_low_for_speech() -> None:
    assert compression_ratio("You " * 40) > 2.4
    assert compression_ratio("The quick brown fox jumps over the lazy dog.") < 2.4
    assert compression_ratio("") == 0.0


def test_twenty_identical_segments_keep_one() -> None:
    drop = repeated_segments(["You"] * 20)
    assert drop == set(range(1, 20))


def test_a_few_identical_segments_stay() -> None:
    assert repeated_segments(["Yes.", "Yes.", "Yes.", "No."]) == set()
    assert repeated_segments(["Hello.", "", "", "", "", "Bye."]) == set()


def test_flags_follow_whispers_thresholds() -> None:
    assert segment_flags("hi", avg_logprob=-0.2, no_speech_prob=0.1, compression=1.0) == []
    assert segment_flags("hi", avg_logprob=-1.5, no_speech_prob=0.9, compression=3.0) == [
        LOW_CONFIDENCE,
        NO_SPEECH,
        HIGH_COMPRESSION,
    ]


def test_non_speech_needs_both_silence_and_doubt() -> None:
    assert is_non_speech(avg_logprob=-1.2, no_speech_prob=0.8)
    assert not is_non_speech(avg_logprob=-0.3, no_speech_prob=0.8)
    assert not is_non_speech(avg_logprob=-1.2, no_speech_prob=0.2)
