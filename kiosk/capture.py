"""The capture pipeline behind the screens: camera and microphone callbacks (their own
threads), one analysis thread (face presence, live answer analysis), encrypted recording.

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
from dataclasses import dataclass, field
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
    started: float
    video: EncryptedMediaWriter | None
    audio: EncryptedMediaWriter | None
    analyzer: object | None
    # The analyzer may still be loading its model when recording starts: audio waits here.
    analyzer_ready: threading.Event = field(default_factory=threading.Event)
    backlog: list = field(default_factory=list)
    last_video_ts: float = 0.0
    frames: int = 0
    chunks: int = 0
    errors: list[str] = field(default_factory=list)


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
    """Owns nothing but wiring: sources, a face counter and an analyzer factory are given.

    Callbacks (all called on worker threads): on_preview(frame), on_faces(count),
    on_presence("lost"|"returned"), on_hardware(component, detail), on_answer(AnswerResult).
    """

    def __init__(self, camera, mic, *, face_counter: Callable[[np.ndarray], int],
                 analyzer_factory: Callable[..., object] | None, media_dir: Path,
                 media_key: bytes, face_lost_after_s: float = 5.0) -> None:
        self.camera = camera
        self.mic = mic
        self.face_counter = face_counter
        self.analyzer_factory = analyzer_factory
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
        self._finishing: _Answer | None = None   # ended, its analysis still being finished
        self._lock = threading.Lock()
        self._latest_frame = None
        self._last_preview = 0.0
        self._audio_q: queue.Queue = queue.Queue(maxsize=600)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepared: dict[str, object] = {}
        self._hw_reported: set[str] = set()
        camera.on_frame(self._frame)
        mic.on_chunk(self._chunk)
        camera.on_error(lambda d: self._hardware("camera", d))
        mic.on_error(lambda d: self._hardware("microphone", d))

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._hw_reported.clear()
        for comp, src in (("camera", self.camera), ("microphone", self.mic)):
            try:
                src.start()
            except Exception as exc:
                self._hardware(comp, str(exc))
        self._thread = threading.Thread(target=self._analysis_loop, name="analysis", daemon=True)
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

    # -- answers ----------------------------------------------------------------------
    def prepare_analyzer(self, key: str, *args) -> None:
        """Build the next answer's analyzer in the background (loading a speech model can
        take seconds) so StartAnswer begins recording at once."""
        if self.analyzer_factory is None or key in self._prepared:
            return

        def build() -> None:
            try:
                self._prepared[key] = self.analyzer_factory(*args)
            except Exception as exc:
                log.exception("answer analyzer could not be built")
                self._prepared[key] = exc

        self._prepared[key] = None
        threading.Thread(target=build, name="analyzer-init", daemon=True).start()

    def begin_answer(self, session_id: str, key: str, *args) -> str:
        """Start recording (and analysing) an answer; returns its answer id."""
        self.abort_answer()
        answer_id = str(uuid.uuid4())
        folder = self.media_dir / session_id
        meta_v = {"codec": "jpeg", "fps": RECORD_FPS}
        meta_a = {"codec": "pcm_s16le", "samplerate": 16000, "channels": 1}
        ans = _Answer(answer_id, time.monotonic(),
                      EncryptedMediaWriter(folder / f"{answer_id}.video.ikm", self.media_key, "video", meta_v),
                      EncryptedMediaWriter(folder / f"{answer_id}.audio.ikm", self.media_key, "audio", meta_a),
                      None)
        self.partial_text = ""
        with self._lock:
            self._answer = ans
        # Never wait for a model on the caller's (GUI) thread: attach the analyzer when ready.
        threading.Thread(target=self._attach_analyzer, args=(ans, key, *args),
                         name="analyzer-attach", daemon=True).start()
        return answer_id

    def _attach_analyzer(self, ans: _Answer, key: str, *args) -> None:
        analyzer = self._take_analyzer(key, *args)
        with self._lock:
            ans.analyzer = analyzer
        ans.analyzer_ready.set()

    def _take_analyzer(self, key: str, *args):
        if self.analyzer_factory is None:
            return None
        deadline = time.monotonic() + 15
        while key in self._prepared and self._prepared[key] is None and time.monotonic() < deadline:
            time.sleep(0.02)  # rare: StartAnswer before the model finished loading
        got = self._prepared.pop(key, None)
        if isinstance(got, Exception) or got is None:
            try:
                return self.analyzer_factory(*args)
            except Exception:
                log.exception("answer analyzer could not be built; recording without live analysis")
                return None
        return got

    def end_answer(self) -> None:
        """Stop recording; the analysis is finished on a worker thread and delivered through
        on_answer (or on_answer_error). Returns at once."""
        with self._lock:
            ans, self._answer = self._answer, None
        if ans is None:
            return
        threading.Thread(target=self._finish, args=(ans,), name="answer-finish", daemon=True).start()

    def abort_answer(self) -> None:
        """Drop the answer in progress (hardware failed, candidate left): files deleted."""
        with self._lock:
            ans, self._answer = self._answer, None
        if ans is None:
            return
        for w in (ans.video, ans.audio):
            if w is not None:
                w.abort()

    @property
    def recording(self) -> bool:
        return self._answer is not None

    def _finish(self, ans: _Answer) -> None:
        self._finishing = ans
        duration = time.monotonic() - ans.started
        media: list[dict] = []
        try:
            # Let the analysis thread drain audio already queued for this answer.
            t_end = time.monotonic() + 2.0
            while not self._audio_q.empty() and time.monotonic() < t_end:
                time.sleep(0.01)
            infos: list[MediaInfo] = [w.close() for w in (ans.video, ans.audio) if w is not None]
            media = [dict(i.as_dict(), answer_id=ans.answer_id) for i in infos]
            transcript, analysis = "", {}
            ans.analyzer_ready.wait(20)
            t_end = time.monotonic() + 5.0
            while ans.backlog and time.monotonic() < t_end:
                time.sleep(0.01)   # the analysis thread feeds what waited for the model
            if ans.analyzer is not None:
                with self._lock:  # the analysis thread may still be inside feed_*
                    transcript, analysis = ans.analyzer.finish()
            analysis = dict(analysis or {})
            analysis.setdefault("capture", {})
            analysis["capture"].update({"frames_recorded": ans.frames, "audio_chunks": ans.chunks,
                                        "dropped_frames": sum(w.dropped for w in (ans.video, ans.audio) if w)})
            self._finishing = None
            self.on_answer(AnswerResult(transcript or "", analysis, media, round(duration, 2)))
        except Exception as exc:
            self._finishing = None
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
                self._audio_q.put_nowait((ans, chunk))
            except queue.Full:
                log.warning("analysis is behind: audio chunk not analysed")

    def _hardware(self, component: str, detail: str) -> None:
        if component in self._hw_reported:
            return
        self._hw_reported.add(component)
        self.on_hardware(component, detail)

    # -- the analysis thread --------------------------------------------------------------
    def _analysis_loop(self) -> None:
        next_presence = 0.0
        last_fed_frame = -1
        while not self._stop.is_set():
            # Audio first: speech recognition must see every chunk, in order.
            try:
                ans, chunk = self._audio_q.get(timeout=0.02)
                if not ans.analyzer_ready.is_set():
                    ans.backlog.append(chunk)
                elif ans.analyzer is not None:
                    with self._lock:
                        for old in ans.backlog:
                            ans.analyzer.feed_audio(old)
                        ans.backlog.clear()
                        ans.analyzer.feed_audio(chunk)
                        self.partial_text = ans.analyzer.partial_text() or self.partial_text
                else:
                    ans.backlog.clear()
                continue_after_audio = not self._audio_q.empty()
            except queue.Empty:
                continue_after_audio = False
                ans = self._answer or self._finishing
                if ans is not None and ans.backlog and ans.analyzer_ready.is_set():
                    # The model arrived after the speaker stopped: feed what waited, in order.
                    with self._lock:
                        if ans.analyzer is not None:
                            for old in ans.backlog:
                                ans.analyzer.feed_audio(old)
                        ans.backlog.clear()
            except Exception:
                log.exception("live analysis of audio failed")
                continue_after_audio = False
            now = time.monotonic()
            frame = self._latest_frame
            if frame is None or frame.index == last_fed_frame:
                continue
            ans = self._answer
            observed = None
            if ans is not None and ans.analyzer is not None and not continue_after_audio:
                try:
                    with self._lock:
                        obs = ans.analyzer.feed_frame(frame)
                    last_fed_frame = frame.index
                    observed = getattr(obs, "faces", None)
                except Exception:
                    log.exception("live analysis of a frame failed")
            if observed is not None or now >= next_presence:
                next_presence = now + 1.0 / PRESENCE_HZ
                if observed is None:
                    # Between answers (or when the answer's analyzer skipped this frame)
                    # presence has its own, cheaper look; during answers it reuses the
                    # analyzer's observation instead of running the face model twice.
                    try:
                        observed = int(self.face_counter(frame.image))
                    except Exception:
                        log.exception("face counter failed")
                        continue
                self.faces = int(observed)
                self.on_faces(self.faces)
                change = self.presence.update(self.faces, now)
                if change and self.watch_presence:
                    self.on_presence(change)
