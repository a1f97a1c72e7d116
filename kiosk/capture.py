"""The capture pipeline behind the screens: camera and microphone callbacks (their own
threads), one feeder thread (audio and frames to the analysis process, face presence),
encrypted recording.

Everything here runs off the GUI thread and reports through plain callbacks, which the
window turns into queued Qt signals. It never touches a widget, and never writes a frame or
a sample to disk unencrypted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiosk.media import EncryptedMediaWriter, MediaInfo

log = logging.getLogger(__name__)

PRESENCE_HZ = 5.0          # face-presence checks per second (enough to notice leaving)
RECORD_FPS = 15.0          # recorded video rate; the preview runs at the camera's rate
PREVIEW_FPS = 15.0


@dataclass
class AnswerResult:
    transcript: str
    analysis: dict
    media: list[dict]
    duration_s: float


@dataclass
class _Answer:
    answer_id: str
    token: str
    started: float
    video: EncryptedMediaWriter | None
    audio: EncryptedMediaWriter | None
    last_video_ts: float = 0.0
    frames: int = 0
    chunks: int = 0
    aborted: bool = False


class FacePresence:
    """Debounced presence: lost after `lost_after_s` without a face, back after a face is
    seen in `return_frames` consecutive checks (one false detection must not un-pause)."""

    def __init__(self, lost_after_s: float, return_frames: int = 2) -> None:
        self.lost_after_s = lost_after_s
        self.return_frames = return_frames
        self.present = True
        self.last_seen = time.monotonic()
        self._streak = 0

    def update(self, faces: int, now: float) -> str | None:
        """'lost' / 'returned' on a change, else None."""
        if faces > 0:
            self.last_seen = now
            self._streak += 1
            if not self.present and self._streak >= self.return_frames:
                self.present = True
                return "returned"
        else:
            self._streak = 0
            if self.present and now - self.last_seen >= self.lost_after_s:
                self.present = False
                return "lost"
        return None

    def reset(self, now: float) -> None:
        self.present = True
        self.last_seen = now
        self._streak = 0


class CapturePipeline:
    """Owns nothing but wiring: sources, a face counter and (optionally) the analysis
    process are given.

    Callbacks (all called on worker threads): on_preview(frame), on_faces(count),
    on_presence("lost"|"returned"), on_hardware(component, detail), on_answer(AnswerResult),
    on_answer_error(detail).
    """

    def __init__(self, camera, mic, *, face_counter: Callable[[np.ndarray], int],
                 analysis=None, media_dir: Path, media_key: bytes,
                 face_lost_after_s: float = 1.0) -> None:
        self.camera = camera
        self.mic = mic
        self.face_counter = face_counter      # for the self-test (and presence without analysis)
        self.analysis = analysis              # kiosk.analysis_worker.AnalysisWorker | None
        self.media_dir = Path(media_dir)
        self.media_key = media_key
        self.presence = FacePresence(face_lost_after_s)
        self.on_preview: Callable = lambda frame: None
        self.on_faces: Callable = lambda n: None
        self.on_presence: Callable = lambda change: None
        self.on_hardware: Callable = lambda component, detail: None
        self.on_answer: Callable = lambda result: None
        self.on_answer_error: Callable = lambda detail: None
        self.watch_presence = False
        self.faces = 0
        self.partial_text = ""
        self._answer: _Answer | None = None
        self._lock = threading.Lock()
        self._latest_frame = None
        self._last_preview = 0.0
        self._audio_q: queue.Queue = queue.Queue(maxsize=600)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hw_reported: set[str] = set()
        camera.on_frame(self._frame)
        mic.on_chunk(self._chunk)
        camera.on_error(lambda d: self._hardware("camera", d))
        mic.on_error(lambda d: self._hardware("microphone", d))
        if analysis is not None:
            analysis.on_partial = self._partial
            analysis.on_faces = self._faces
            analysis.on_error = lambda d: log.error("live analysis unavailable: %s", d)

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._hw_reported.clear()
        for comp, src in (("camera", self.camera), ("microphone", self.mic)):
            try:
                src.start()
            except Exception as exc:
                self._hardware(comp, str(exc))
        self._thread = threading.Thread(target=self._feed_loop, name="capture-feed", daemon=True)
        self._thread.start()

    def restart_dead_sources(self) -> None:
        """Reopen a camera or microphone that was lost (replugged, driver recovered); runs
        on its own thread because opening a device can take seconds. A source that fails
        again is reported again."""
        def work() -> None:
            for comp, src in (("camera", self.camera), ("microphone", self.mic)):
                if src.alive:
                    continue
                self._hw_reported.discard(comp)
                try:
                    src.start()
                    log.info("%s reopened", comp)
                except Exception as exc:
                    self._hardware(comp, str(exc))

        threading.Thread(target=work, name="reopen-sources", daemon=True).start()

    def stop(self) -> None:
        self.abort_answer()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._thread = None
        self.camera.stop()
        self.mic.stop()
        if self.analysis is not None:
            self.analysis.stop()

    # -- answers ----------------------------------------------------------------------
    def _call(self, fn, *args) -> None:
        """Run fn on the feeder thread, in order with the audio (pipe writes can block for
        a moment while the child is busy; the GUI thread must never wait for that)."""
        try:
            self._audio_q.put(("call", fn, args), timeout=0.5)
        except queue.Full:
            log.error("capture feeder is stuck; %s dropped", getattr(fn, "__name__", fn))

    def prepare_analyzer(self, key: str, question, job, settings=None) -> None:
        """Have the analysis process load the next answer's models now (a speech model can
        take seconds), so StartAnswer begins at once."""
        if self.analysis is not None:
            self._call(self.analysis.prepare, key, question, job)

    def begin_answer(self, session_id: str, key: str, question, job, settings=None) -> str:
        """Start recording (and analysing) an answer; returns its recording id. Never waits."""
        self.abort_answer()
        answer_id = str(uuid.uuid4())
        folder = self.media_dir / session_id
        meta_v = {"codec": "jpeg", "fps": RECORD_FPS}
        meta_a = {"codec": "pcm_s16le", "samplerate": 16000, "channels": 1}
        ans = _Answer(answer_id, str(uuid.uuid4()), time.monotonic(),
                      EncryptedMediaWriter(folder / f"{answer_id}.video.ikm", self.media_key, "video", meta_v),
                      EncryptedMediaWriter(folder / f"{answer_id}.audio.ikm", self.media_key, "audio", meta_a))
        self.partial_text = ""
        if self.analysis is not None:
            # Queued before any of this answer's audio: the child switches analyzers in order.
            self._call(self.analysis.begin, ans.token, key, question, job)
        with self._lock:
            self._answer = ans
        return answer_id

    def end_answer(self) -> None:
        """Stop recording; the analysis is finished on a worker thread and delivered through
        on_answer (or on_answer_error). Returns at once."""
        with self._lock:
            ans, self._answer = self._answer, None
        if ans is None:
            return
        threading.Thread(target=self._finish, args=(ans,), name="answer-finish", daemon=True).start()

    def abort_answer(self) -> None:
        """Drop the answer in progress (hardware failed, reset): its files are deleted."""
        with self._lock:
            ans, self._answer = self._answer, None
        if ans is None:
            return
        ans.aborted = True
        if self.analysis is not None:
            self._call(self.analysis.abort)
        for w in (ans.video, ans.audio):
            if w is not None:
                w.abort()

    @property
    def recording(self) -> bool:
        return self._answer is not None

    def _finish(self, ans: _Answer) -> None:
        duration = time.monotonic() - ans.started
        try:
            # Everything this answer said goes to the analysis before "finish" does.
            flushed = threading.Event()
            self._call(flushed.set)
            if not flushed.wait(10):
                log.error("audio for the analysis not flushed in 10 s")
            infos: list[MediaInfo] = [w.close() for w in (ans.video, ans.audio) if w is not None]
            media = [dict(i.as_dict(), answer_id=ans.answer_id) for i in infos]
            transcript, analysis = "", {}
            if self.analysis is not None:
                transcript, analysis = self.analysis.finish(ans.token)
            analysis = dict(analysis or {})
            analysis["capture"] = {"frames_recorded": ans.frames, "audio_chunks": ans.chunks,
                                   "dropped_frames": sum(w.dropped for w in (ans.video, ans.audio) if w)}
            self.on_answer(AnswerResult(transcript or "", analysis, media, round(duration, 2)))
        except Exception as exc:
            log.exception("finishing an answer failed")
            self.on_answer_error(f"{type(exc).__name__}: {exc}")

    # -- source callbacks (camera / mic threads) ------------------------------------------
    def _frame(self, frame) -> None:
        self._latest_frame = frame
        ans = self._answer
        if ans is not None and ans.video is not None and frame.ts - ans.last_video_ts >= 1.0 / RECORD_FPS - 0.005:
            ans.last_video_ts = frame.ts
            ans.frames += 1
            ans.video.add(frame.image, frame.ts)
        if frame.ts - self._last_preview >= 1.0 / PREVIEW_FPS:
            self._last_preview = frame.ts
            try:
                self.on_preview(frame)
            except Exception:
                log.exception("preview callback failed")

    def _chunk(self, chunk) -> None:
        ans = self._answer
        if ans is not None and ans.audio is not None:
            ans.chunks += 1
            ans.audio.add(chunk.pcm, chunk.ts)
            try:
                self._audio_q.put_nowait(("audio", ans, chunk))
            except queue.Full:
                log.warning("analysis is behind: audio chunk not analysed")

    def _hardware(self, component: str, detail: str) -> None:
        if component in self._hw_reported:
            return
        self._hw_reported.add(component)
        self.on_hardware(component, detail)

    # -- results from the analysis process (its reader thread) ------------------------------
    def _partial(self, text: str) -> None:
        if self._answer is not None:
            self.partial_text = text

    def _faces(self, n: int) -> None:
        self.faces = n
        self.on_faces(n)
        change = self.presence.update(n, time.monotonic())
        if change and self.watch_presence:
            self.on_presence(change)

    # -- the feeder thread ---------------------------------------------------------------------
    def _feed_loop(self) -> None:
        """Audio to the analysis in order, frames at the pace the analysis can take (or to
        the local face counter when there is no analysis process)."""
        next_presence = 0.0
        last_sent = -1
        while not self._stop.is_set():
            try:
                item = self._audio_q.get(timeout=0.02)
            except queue.Empty:
                item = None
            if item is not None:
                try:
                    if item[0] == "call":
                        item[1](*item[2])
                    elif self.analysis is not None and not item[1].aborted:
                        self.analysis.audio(item[2].pcm)
                except Exception:
                    log.exception("feeding the analysis failed")
                continue
            frame = self._latest_frame
            if frame is None or frame.index == last_sent:
                continue
            now = time.monotonic()
            if self.analysis is not None and self.analysis.alive:
                # During an answer every frame the child can take; between answers 5 a second.
                if self._answer is None and now < next_presence:
                    continue
                if self.analysis.frame(frame.image, frame.ts):
                    last_sent = frame.index
                    next_presence = now + 1.0 / PRESENCE_HZ
                continue
            if now < next_presence:
                continue
            next_presence = now + 1.0 / PRESENCE_HZ
            last_sent = frame.index
            try:
                self._faces(int(self.face_counter(frame.image)))
            except Exception:
                log.exception("face counter failed")
