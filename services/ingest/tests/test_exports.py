"""SRT / WebVTT / text formatting of transcripts (pure)."""

from __future__ import annotations

import itertools

import pytest

from ingest.exports import (
    TimedSegment,
    TimedWord,
    build_cues,
    format_timestamp,
    to_srt,
    to_text,
    to_vtt,
)


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (3.7, "00:00:03,700", "00:00:03.700"),
        (61.0006, "00:01:01,001", "00:01:01.001"),
        (3599.9999, "01:00:00,000", "01:00:00.000"),
        (36_000 * 11 + 5.25, "110:00:05,250", "110:00:05.250"),
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert format_timestamp(seconds, decimal=",") == srt
    assert format_timestamp(seconds, decimal=".") == vtt


def test_srt_numbers_cues_and_separates_them_with_blank_lines() -> None:
    out = to_srt([TimedSegment(0.0, 1.5, "Hello there."), TimedSegment(1.5, 3.0, "General.")])
    assert out == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:00:01,500 --> 00:00:03,000\nGeneral.\n"
    )


def test_vtt_has_its_header_and_escapes_markup() -> None:
    out = to_vtt([TimedSegment(0.0, 1.0, "a <b> & c --> d")])
    assert out.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\n")
    assert "a &lt;b&gt; &amp; c --&gt; d" in out


def test_long_segment_without_words_splits_time_by_characters() -> None:
    text = " ".join(["word"] * 40)  # 199 characters: needs three 2-line cues
    cues = build_cues([TimedSegment(10.0, 30.0, text)])
    assert len(cues) == 3
    assert all(len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines) for c in cues)
    assert cues[0].start == 10.0
    assert cues[-1].end == 30.0
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(cues))
    assert " ".join(" ".join(c.lines) for c in cues) == text


def test_long_segment_with_words_takes_each_cue_from_its_words() -> None:
    words = [f"w{i:02d}xxxxx" for i in range(20)]  # 8 characters: 4 a line, 8 a cue
    timed = [TimedWord(w, 5.0 + i, 5.0 + i + 0.5) for i, w in enumerate(words)]
    cues = build_cues([TimedSegment(5.0, 25.0, " ".join(words), timed)])
    assert [c.start for c in cues] == [5.0, 13.0, 21.0]
    assert [c.end for c in cues] == [12.5, 20.5, 24.5]


def test_empty_segments_make_no_cues_and_a_zero_length_cue_gets_a_millisecond() -> None:
    assert build_cues([TimedSegment(0, 1, "   ")]) == []
    (cue,) = build_cues([TimedSegment(2.0, 2.0, "Hm.")])
    assert cue.end > cue.start


def test_text_is_one_segment_a_line() -> None:
    assert to_text([TimedSegment(0, 1, " Hello  there. "), TimedSegment(1, 2, "Bye.")]) == (
        "Hello there.\nBye.\n"
    )
