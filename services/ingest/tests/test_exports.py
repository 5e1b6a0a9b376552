"""SRT / WebVTT / text formatting of transcripts (pure)."""

from __future__ import annotations

import csv
import io
import itertools

import pytest
import srt
import webvtt

from ingest.exports import (
    CueLimits,
    TimedSegment,
    TimedWord,
    build_cues,
    format_timestamp,
    to_srt,
    to_text,
    to_tsv,
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


# --- caption limits a caller asks for (line width, lines per cue, cue duration), and TSV

SPEECH = (
    "Today we are going to talk about the migration of the northern bald ibis, a bird that "
    "almost vanished from Europe and was taught its route again by people flying microlights."
)


def _segments(with_words: bool) -> list[TimedSegment]:
    tokens = SPEECH.split()
    step = 0.45
    words = [
        TimedWord(w, 5.0 + i * step, 5.0 + (i + 1) * step - 0.05) for i, w in enumerate(tokens)
    ]
    return [
        TimedSegment(0.0, 2.0, "Good morning."),
        TimedSegment(5.0, 5.0 + step * len(tokens), SPEECH, words if with_words else None),
        TimedSegment(40.0, 41.0, "Thank you."),
    ]


@pytest.mark.parametrize("with_words", [True, False], ids=["word-times", "no-word-times"])
@pytest.mark.parametrize(
    "limits",
    [
        CueLimits(width=20, lines=1),
        CueLimits(width=32, lines=3, max_seconds=3.0),
        CueLimits(max_seconds=1.5),
        CueLimits(width=60, lines=1, max_seconds=6.0),
    ],
    ids=["20x1", "32x3-3s", "default-width-1.5s", "60x1-6s"],
)
def test_captions_parse_and_respect_the_asked_limits(limits: CueLimits, with_words: bool) -> None:
    segments = _segments(with_words)
    as_srt = list(srt.parse(to_srt(segments, limits)))
    as_vtt = webvtt.from_string(to_vtt(segments, limits)).captions

    assert len(as_srt) == len(as_vtt) > 3  # the long segment was split
    for cue, caption in zip(as_srt, as_vtt, strict=True):
        lines = cue.content.split("\n")
        assert len(lines) <= limits.lines
        assert all(len(line) <= limits.width for line in lines)
        if limits.max_seconds is not None:
            assert (cue.end - cue.start).total_seconds() <= limits.max_seconds + 0.0005
        assert caption.text == cue.content
        assert caption.start_in_seconds == int(cue.start.total_seconds())
    # Every word shown once, in order, and the cues follow one another.
    shown = " ".join(" ".join(c.content.split("\n")) for c in as_srt)
    assert shown == " ".join(" ".join(s.text.split()) for s in segments)
    assert all(a.end <= b.start for a, b in itertools.pairwise(as_srt))


def test_a_duration_limit_splits_a_short_but_slow_segment() -> None:
    cues = build_cues([TimedSegment(0.0, 9.0, "one two three")], CueLimits(max_seconds=4.0))
    assert [c.lines for c in cues] == [("one",), ("two",), ("three",)]
    assert max(c.end - c.start for c in cues) <= 4.0 + 1e-9


def test_default_limits_are_the_old_ones() -> None:
    segments = _segments(with_words=True)
    assert to_srt(segments) == to_srt(segments, CueLimits(width=42, lines=2))
    assert build_cues(segments) == build_cues(segments, CueLimits())


def test_tsv_is_whisper_s_start_end_text_in_milliseconds() -> None:
    out = to_tsv([TimedSegment(0.0, 1.5, " Hello\tthere."), TimedSegment(61.0006, 62.25, "Bye.")])
    assert out == "start\tend\ttext\n0\t1500\tHello there.\n61001\t62250\tBye.\n"
    rows = list(csv.DictReader(io.StringIO(out), delimiter="\t"))
    assert [r["text"] for r in rows] == ["Hello there.", "Bye."]
