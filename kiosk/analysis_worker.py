"""Answer analysis in a child process: speech recognition and the face model hold Python's
GIL for tens of milliseconds at a time, which in the kiosk's process stalled the screen and
starved the microphone. Here they get their own interpreter; the kiosk sends audio and
(scaled-down) frames through a pipe and gets captions, face counts and results back.

The child never touches Qt, the store or the disk; it analyses and answers, nothing else.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

log = logging.getLogger(__name__)

MAX_FRAME_WIDTH = 640   # the face model needs no more; smaller frames cross the pipe faster


# --------------------------------------------------------------------------- the child


def _child(conn, settings) -> None:  # pragma: no cover - runs in the child process
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s analysis-worker: %(message)s")
    from analysis.live import LiveAnswerAnalyzer
    from kiosk.app import make_face_counter

    count_faces = make_face_counter()
    prepared: dict[str, object] = {}
    analyzer = None
    token = None
    last_partial = ""

    def build(question, job):
        return LiveAnswerAnalyzer(question, job, settings)

    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        try:
            if kind == "prepare":
                _, key, question, job = msg
                if key not in prepared:
                    prepared[key] = build(question, job)
            elif kind == "begin":
                _, token, key, question, job = msg
                analyzer = prepared.pop(key, None) or build(question, job)
                prepared.clear()
                last_partial = ""
            elif kind == "audio":
                if analyzer is not None:
                    text = analyzer.feed_audio(np.frombuffer(msg[1], dtype=np.int16))
                    if text != last_partial:
                        last_partial = text
                        conn.send(("partial", text))
            elif kind == "frame":
                _, ts, shape, data = msg
                image = np.frombuffer(data, dtype=np.uint8).reshape(shape)
                faces = None
                if analyzer is not None:
                    obs = analyzer.feed_frame(SimpleNamespace(image=image, ts=ts))
                    faces = getattr(obs, "faces", None)
                if faces is None:
                    faces = int(count_faces(image))
                conn.send(("faces", int(faces)))
            elif kind == "finish":
                result = ("", {}) if analyzer is None else analyzer.finish()
                conn.send(("result", msg[1], result[0], result[1]))
                analyzer = None
            elif kind == "abort":
                analyzer = None
            elif kind == "stop":
                return
        except Exception as exc:  # report, keep serving: one bad answer is not a dead kiosk
            logging.getLogger("analysis-worker").exception("%s failed", kind)
            if kind == "finish":
                conn.send(("result", msg[1], "", {"error": f"{type(exc).__name__}: {exc}"}))
                analyzer = None
            elif kind == "frame":
                conn.send(("faces", -1))
            else:
                conn.send(("error", f"{kind}: {type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- the parent


class AnalysisWorker:
    """The kiosk's handle on the child. Callbacks run on the reader thread:
    on_partial(text), on_faces(n), on_error(detail). Thread-safe senders."""

    def __init__(self, settings, *, start_timeout_s: float = 60.0) -> None:
        ctx = mp.get_context("spawn")   # never fork a process that has Qt and threads
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child_conn, settings), name="analysis-worker",
                                 daemon=True)
        self._proc.start()
        child_conn.close()
        self._send_lock = threading.Lock()
        self._results: dict[str, tuple] = {}
        self._result_cv = threading.Condition()
        self._ready = threading.Event()
        self.frames_in_flight = 0
        self.on_partial: Callable[[str], None] = lambda text: None
        self.on_faces: Callable[[int], None] = lambda n: None
        self.on_error: Callable[[str], None] = lambda detail: None
        self.start_timeout_s = start_timeout_s
        self._dead = False
        self._reader = threading.Thread(target=self._read, name="analysis-reader", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc.is_alive()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(self.start_timeout_s if timeout is None else timeout)

    def _send(self, msg: tuple) -> bool:
        if self._dead:
            return False
        try:
            with self._send_lock:
                self._conn.send(msg)
            return True
        except (OSError, EOFError, BrokenPipeError) as exc:
            self._die(f"analysis process unreachable: {exc}")
            return False

    def _die(self, detail: str) -> None:
        if self._dead:
            return
        self._dead = True
        log.error("%s", detail)
        with self._result_cv:
            self._result_cv.notify_all()
        self.on_error(detail)

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                if not self._stopping:
                    self._die("analysis process exited")
                return
            kind = msg[0]
            try:
                if kind == "ready":
                    self._ready.set()
                elif kind == "partial":
                    self.on_partial(msg[1])
                elif kind == "faces":
                    self.frames_in_flight = max(0, self.frames_in_flight - 1)
                    if msg[1] >= 0:
                        self.on_faces(msg[1])
                elif kind == "result":
                    with self._result_cv:
                        self._results[msg[1]] = (msg[2], msg[3])
                        self._result_cv.notify_all()
                elif kind == "error":
                    log.error("analysis worker: %s", msg[1])
            except Exception:
                log.exception("handling %s from the analysis worker failed", kind)

    _stopping = False

    # -- requests ----------------------------------------------------------------------------
    def prepare(self, key: str, question, job) -> None:
        """Load the next answer's models in the child before the candidate starts."""
        self._send(("prepare", key, question, job))

    def begin(self, token: str, key: str, question, job) -> None:
        self._send(("begin", token, key, question, job))

    def audio(self, pcm: np.ndarray) -> None:
        self._send(("audio", np.asarray(pcm, dtype=np.int16).tobytes()))

    def frame(self, image: np.ndarray, ts: float) -> bool:
        """Send a frame unless one is still being analysed (the child sets the pace)."""
        if self.frames_in_flight >= 1 or not self._ready.is_set():
            return False
        h, w = image.shape[:2]
        if w > MAX_FRAME_WIDTH:
            import cv2

            image = cv2.resize(image, (MAX_FRAME_WIDTH, int(h * MAX_FRAME_WIDTH / w)),
                               interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image)
        self.frames_in_flight += 1
        if not self._send(("frame", ts, image.shape, image.tobytes())):
            self.frames_in_flight = 0
            return False
        return True

    def finish(self, token: str, timeout: float = 60.0) -> tuple[str, dict]:
        """The answer's (transcript, analysis); waits for the child (call off the GUI thread)."""
        if not self._send(("finish", token)):
            return "", {"error": "analysis process not running"}
        deadline = time.monotonic() + timeout
        with self._result_cv:
            while token not in self._results and not self._dead:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "", {"error": "analysis timed out"}
                self._result_cv.wait(left)
            return self._results.pop(token, ("", {"error": "analysis process exited"}))

    def abort(self) -> None:
        self._send(("abort",))

    def stop(self) -> None:
        self._stopping = True
        self._send(("stop",))
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=2)
        try:
            self._conn.close()
        except OSError:
            pass
