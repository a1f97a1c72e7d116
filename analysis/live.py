"""One answer analysed live: camera frames and microphone chunks go in from their worker
threads, partial captions come out, and finish() gives the transcript and the explained
analysis. It never touches devices or Qt, and never logs what the candidate said.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from analysis.face import AttentionAggregator, FaceAnalyzer, FaceObservation
from analysis.scoring import score_answer
from analysis.speech import Recognizer, make_recognizer

log = logging.getLogger(__name__)

# Frames analysed per second. The camera gives 30; attention changes far more slowly, and
# half the frames keeps the whole live pipeline inside one core (see benchmarks/analysis.py).
DEFAULT_FACE_FPS = 15.0


def grammar_for(question: Any, language: str) -> list[str]:
    """The phrases to bias recognition towards: the rubric's terms and synonyms."""
    lang = "zh" if language.startswith("zh") else "en"
    out: list[str] = []
    for kw in question.rubric.keywords_for(lang) if question.rubric else []:
        for p in (kw.term, *kw.synonyms):
            if p not in out:
                out.append(p)
    return out


class LiveAnswerAnalyzer:
    """Analyse one answer as it is given. feed_frame / feed_audio may be called from two
    different threads; finish() once, after both have stopped feeding.

    `recognizer` and `face_analyzer` can be passed in to reuse loaded models across answers;
    otherwise they are made here (a missing speech model raises ModelError now, before the
    candidate starts talking)."""

    def __init__(
        self,
        question: Any,
        job: Any,
        settings: Any = None,
        *,
        recognizer: Recognizer | None = None,
        face_analyzer: FaceAnalyzer | None = None,
        face_fps: float = DEFAULT_FACE_FPS,
        bias: str = "dual",
        clock: Any = time.monotonic,
    ) -> None:
        self.question = question
        self.job = job
        self.language = question.language or job.language
        if recognizer is None:
            if settings is None:
                raise ValueError("LiveAnswerAnalyzer needs settings or a recognizer")
            recognizer = make_recognizer(settings, self.language, bias=bias)
        self.recognizer = recognizer
        self._own_face = face_analyzer is None
        self.face = face_analyzer or FaceAnalyzer()
        self.face_interval = 1.0 / face_fps if face_fps > 0 else 0.0
        self.attention = AttentionAggregator()
        self._clock = clock
        self._face_lock = threading.Lock()
        self._audio_lock = threading.Lock()
        self._last_face_ts: float | None = None
        self._frames_seen = 0
        self._frames_analysed = 0
        self._samples = 0
        self._partial = ""
        self._last_obs: FaceObservation | None = None
        self._finished = False
        self.grammar = grammar_for(question, self.language)
        self.recognizer.start(self.grammar or None)

    # -- feeding (worker threads)

    def feed_frame(self, frame: Any) -> FaceObservation | None:
        """A camera frame (hardware Frame with .image/.ts, or a BGR array). Returns the
        current observation: this frame's when it was analysed, else the latest one (frames
        between analysis slots are skipped; callers need not run a face model of their own)."""
        image = getattr(frame, "image", frame)
        ts = getattr(frame, "ts", None)
        if ts is None:
            ts = self._clock()
        with self._face_lock:
            if self._finished:
                return self._last_obs
            self._frames_seen += 1
            if (
                self._last_face_ts is not None
                and ts - self._last_face_ts < self.face_interval * 0.999
            ):
                return self._last_obs
            self._last_face_ts = ts
            obs = self.face.analyze(np.asarray(image))
            self.attention.add(obs, ts)
            self._frames_analysed += 1
            self._last_obs = obs
            return obs

    def feed_audio(self, chunk: Any) -> str:
        """A microphone chunk (hardware AudioChunk with .pcm, an int16 array, or bytes).
        Returns the caption so far."""
        pcm = getattr(chunk, "pcm", chunk)
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.int16:
                raise ValueError(f"audio must be int16 PCM, got {pcm.dtype}")
            n, data = pcm.size, pcm.tobytes()
        else:
            data = bytes(pcm)
            n = len(data) // 2
        with self._audio_lock:
            if self._finished:
                return self._partial
            self._samples += n
            self._partial = self.recognizer.feed(data).text
            return self._partial

    # -- reading (UI thread)

    def partial_text(self) -> str:
        return self._partial

    @property
    def last_observation(self) -> FaceObservation | None:
        return self._last_obs

    # -- the end

    def finish(self, duration_s: float | None = None) -> tuple[str, dict[str, Any]]:
        """Stop, and return (transcript text, analysis dict with transcript, face summary and
        the explained answer score). `duration_s` defaults to the audio received."""
        with self._audio_lock, self._face_lock:
            if self._finished:
                raise RuntimeError("LiveAnswerAnalyzer.finish called twice")
            self._finished = True
            transcript = self.recognizer.finish()
            face_summary = self.attention.summary()
            if self._own_face:
                self.face.close()
        if duration_s is None:
            duration_s = self._samples / 16000.0
        score = score_answer(self.question, self.job, transcript, face_summary, duration_s)
        analysis = {
            "version": 1,
            "question_id": self.question.id,
            "language": self.language,
            "duration_s": round(float(duration_s), 2),
            "transcript": transcript.to_dict(),
            "face": face_summary,
            "face_engine": self.face.engine,
            "frames_seen": self._frames_seen,
            "frames_analysed": self._frames_analysed,
            "score": score.to_dict(),
        }
        return transcript.text, analysis
