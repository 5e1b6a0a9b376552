"""The real engine (offline tiny.en and base) on Festival speech, silence and ../shared/audio.

What a user notices: a name spelled as the prompt gives it, English from German speech,
the language of a clip, no words at all for silence or noise, a refused impossible job.
"""

from __future__ import annotations

import os
import threading
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.transcription import Segment
from services.transcriber.tests.festival import synthesize
from transcriber.engine import EngineRequest, EngineResult, FasterWhisperEngine, _Emitter
from transcriber.errors import JobFailure
from transcriber.settings import TranscriberSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_AUDIO = Path(__file__).resolve().parents[4] / "shared" / "audio"
needs_shared = pytest.mark.skipif(
    not (SHARED_AUDIO / "manifest.tsv").exists(), reason="../shared/audio is not here"
)
pytestmark = pytest.mark.slow

# Proper nouns both models misspell unaided (measured: "Zenthrix"/"Zenfrix",
# "Shelban Quaglery"/"Shalvan Quagliary").
NOUN_SCRIPTS = {
    "Zyntherix": "Our new database is called Zyntherix, and it ships next week.",
    "Siobhan Quaglieri": "The meeting with Siobhan Quaglieri starts at noon.",
}


class TwoPools:
    """A tiny.en worker and a base worker: each job goes to the one of its model."""

    def __init__(self) -> None:
        self.tiny = FasterWhisperEngine(TranscriberSettings(health_port=None, cpu_threads=2))
        self.base = FasterWhisperEngine(
            TranscriberSettings(health_port=None, cpu_threads=2, model="base")
        )

    def transcribe(self, path: Path, request: EngineRequest, **kwargs: Any) -> EngineResult:
        worker = self.base if request.model == "base" else self.tiny
        return worker.transcribe(path, request, **kwargs)


@pytest.fixture(scope="module")
def engine() -> TwoPools:
    return TwoPools()


def run(engine: FasterWhisperEngine | TwoPools, path: Path, request: EngineRequest) -> EngineResult:
    return engine.transcribe(path, request, on_segment=lambda *_: None, cancelled=threading.Event())


def words(result: EngineResult) -> list[str]:
    return result.text.split()


@pytest.fixture(scope="module")
def ten_minutes_of_silence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("silence") / "silence-600s.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000 * 600)
    return path


@pytest.mark.parametrize("model", ["tiny.en", "base"])
@pytest.mark.parametrize("noun", list(NOUN_SCRIPTS))
@pytest.mark.parametrize("option", ["initial_prompt", "hotwords"])
def test_a_prompted_proper_noun_is_spelled_as_given(
    engine: TwoPools, model: str, noun: str, option: str
) -> None:
    speech = synthesize(NOUN_SCRIPTS[noun])
    plain = run(engine, speech, EngineRequest(language="en", word_timestamps=False, model=model))
    prompted = run(
        engine,
        speech,
        EngineRequest(
            language="en",
            word_timestamps=False,
            model=model,
            initial_prompt=noun if option == "initial_prompt" else None,
            hotwords=noun if option == "hotwords" else None,
        ),
    )
    assert noun not in plain.text
    assert noun in prompted.text


def test_ten_minutes_of_silence_give_no_words_and_say_why(
    engine: TwoPools, ten_minutes_of_silence: Path
) -> None:
    for model in ("tiny.en", "base"):
        result = run(
            engine,
            ten_minutes_of_silence,
            EngineRequest(language=None, word_timestamps=True, model=model),
        )
        assert words(result) == []
        assert result.segments == []
        assert result.empty_reason == "no_speech"
        assert result.duration_seconds == pytest.approx(600.0)


def test_without_guardrails_silence_is_where_whisper_hallucinates(
    ten_minutes_of_silence: Path, tmp_path: Path
) -> None:
    # The guard is what makes the test above pass: a minute of the same silence, unguarded.
    minute = tmp_path / "silence-60s.wav"
    with wave.open(str(ten_minutes_of_silence)) as src, wave.open(str(minute), "wb") as out:
        out.setparams(src.getparams())
        out.writeframes(src.readframes(16000 * 60))
    unguarded = FasterWhisperEngine(
        TranscriberSettings(health_port=None, cpu_threads=2, guardrails=False)
    )
    result = run(unguarded, minute, EngineRequest(language="en", word_timestamps=False))
    assert words(result), "tiny.en no longer hallucinates on silence: the guard may be moot"
    assert result.empty_reason is None


def test_speech_keeps_its_words_with_quality_signals(engine: TwoPools) -> None:
    result = run(
        engine,
        synthesize("Good morning. Today the weather in Boston will be sunny and warm."),
        EngineRequest(language="en", word_timestamps=True),
    )
    assert "Boston" in result.text
    assert result.empty_reason is None
    for segment in result.segments:
        assert segment.compression_ratio is not None
        assert 0 < segment.compression_ratio < 2.4
        assert segment.flags == []
        assert segment.words


def test_translation_and_languages_are_refused_on_an_english_only_model(
    engine: TwoPools,
) -> None:
    speech = synthesize("Hello there.")
    tiny = "tiny.en"
    with pytest.raises(JobFailure, match="English-only and cannot translate"):
        run(engine, speech, EngineRequest(None, False, task="translate", model=tiny))
    with pytest.raises(JobFailure, match="English-only"):
        run(engine, speech, EngineRequest(language="de", word_timestamps=False, model=tiny))
    with pytest.raises(JobFailure, match="needs a multilingual model"):
        run(engine.tiny, speech, EngineRequest(language="de", word_timestamps=False))
    with pytest.raises(JobFailure, match="not served by this worker"):
        run(engine.tiny, speech, EngineRequest(language=None, word_timestamps=False, model="base"))


def test_each_worker_serves_its_one_model(engine: TwoPools) -> None:
    speech = synthesize("Please call me back tomorrow afternoon.")
    assert engine.tiny.model_names == ["tiny.en"]
    assert engine.base.model_names == ["base"]
    assert run(engine.tiny, speech, EngineRequest(None, False)).model_name == "tiny.en"
    assert run(engine.base, speech, EngineRequest(None, False)).model_name == "base"


@needs_shared
def test_translate_turns_german_speech_into_english(engine: TwoPools) -> None:
    clip = SHARED_AUDIO / "picovoice_test_de.wav"  # "Der hinter diesem Portal liegenden Raum..."
    german = run(engine, clip, EngineRequest(None, False, model="base"))
    english = run(engine, clip, EngineRequest(None, False, model="base", task="translate"))
    assert "Raum" in german.text
    assert "room" in english.text.lower()
    assert "raum" not in english.text.lower()
    assert english.language == "de"


@needs_shared
@pytest.mark.parametrize(
    ("clip", "language"),
    [("picovoice_test_es.wav", "es"), ("picovoice_test_fr.wav", "fr"), ("deepspeech_ru.wav", "ru")],
)
def test_a_detected_language_is_reported_with_its_probability(
    engine: TwoPools, clip: str, language: str
) -> None:
    result = run(engine, SHARED_AUDIO / clip, EngineRequest(None, False, model="base"))
    assert result.language == language
    assert 0.5 < result.language_probability <= 1.0


@needs_shared
def test_the_noise_clip_gives_no_words(engine: TwoPools) -> None:
    # 8.2 s of stationary noise; tiny.en unguarded writes "Woohoo!" here.
    for model in ("tiny.en", "base"):
        result = run(
            engine, SHARED_AUDIO / "picovoice_empty.wav", EngineRequest(None, False, model=model)
        )
        assert words(result) == []
        assert result.empty_reason == "no_speech"


@needs_shared
def test_the_near_silent_start_of_a_call_adds_no_words(engine: TwoPools) -> None:
    # pyannote's sample opens with ~6.5 s at about -70 dBFS before "Hello?".
    result = run(engine, SHARED_AUDIO / "pyannote_sample.wav", EngineRequest("en", False))
    assert result.text.lower().startswith("hello")


def _fw(text: str, start: float, end: float, no_speech: float = 0.1) -> SimpleNamespace:
    return SimpleNamespace(
        text=" " + text,
        start=start,
        end=end,
        avg_logprob=-0.3,
        no_speech_prob=no_speech,
        compression_ratio=1.0,
        words=None,
    )


def test_a_run_of_identical_segments_is_reported_once_flagged() -> None:
    seen: list[Segment] = []
    emitter = _Emitter(on_segment=lambda s, *_: seen.append(s), duration=30.0, max_repeats=3)
    emitter.push(_fw("Hello everyone.", 0, 2), False, [(0.0, 30.0)])
    for i in range(20):
        emitter.push(_fw("You", 2 + i, 3 + i), False, [(0.0, 30.0)])
    emitter.push(_fw("Goodbye.", 23, 24), False, [(0.0, 30.0)])
    emitter.flush()
    assert [s.text for s in seen] == ["Hello everyone.", "You", "Goodbye."]
    assert [s.id for s in seen] == [0, 1, 2]
    assert seen[1].flags == ["repetition"]
    assert (seen[1].start, seen[1].end) == (2, 22)
    assert emitter.dropped == 19


def test_a_loop_inside_a_segment_is_cut_and_non_speech_outside_speech_dropped() -> None:
    seen: list[Segment] = []
    emitter = _Emitter(on_segment=lambda s, *_: seen.append(s), duration=60.0, max_repeats=3)
    speech = [(0.0, 10.0)]
    emitter.push(_fw("I think " + "we should go " * 8, 0, 10), False, speech)
    emitter.push(_fw("Thank you for watching.", 40, 45, no_speech=0.9), False, speech)
    emitter.flush()
    assert [s.text for s in seen] == ["I think we should go"]
    assert seen[0].flags == ["repetition"]
    assert emitter.words_cut == 21
    assert emitter.dropped == 1


@needs_shared
def test_batched_mode_transcribes_a_two_minute_talk() -> None:
    # The batched pipeline batches VAD chunks; without VAD it refused audio of 30 s or more.
    batched = FasterWhisperEngine(
        TranscriberSettings(health_port=None, cpu_threads=2, batched=True)
    )
    result = run(batched, SHARED_AUDIO / "tedlium_long_120s.flac", EngineRequest("en", False))
    assert "energy and climate" in result.text.lower()
    assert result.segments[-1].end > 100
