"""Wires the kiosk's parts from settings: sources, face counter, live analyzer, media key,
the session machine and the window. Used by `interview-kiosk` and by its demo.

It only assembles; it holds no state of its own and never touches candidate data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def make_face_counter() -> Callable[[np.ndarray], int]:
    """Faces in a BGR frame: analysis' face detector when it is there, else OpenCV's Haar
    cascade (coarser, but needs no model)."""
    try:
        from analysis.face import count_faces  # type: ignore[attr-defined]

        return count_faces
    except Exception:
        pass
    try:
        from analysis.face import FaceAnalyzer

        analyzer = FaceAnalyzer()
        lock = threading.Lock()   # one mediapipe graph; presence and self-test share it

        def count(image: np.ndarray) -> int:
            with lock:
                obs = analyzer.analyze(image)
            for attr in ("faces", "face_count", "n_faces"):
                v = getattr(obs, attr, None)
                if v is not None:
                    return int(v) if not isinstance(v, list | tuple) else len(v)
            return 1 if getattr(obs, "present", False) else 0

        return count
    except Exception:
        log.info("analysis.face not available; using the Haar cascade for face presence")
    from hardware.selftest import haar_face_detector

    return haar_face_detector()


def start_analysis(settings):
    """The analysis process (speech and face models, kiosk/analysis_worker.py), or None
    when analysis is not installed: answers are then recorded without captions and scores."""
    import importlib.util

    if importlib.util.find_spec("analysis.live") is None:
        log.warning("analysis.live not available: answers are recorded without live analysis")
        return None
    from kiosk.analysis_worker import AnalysisWorker

    return AnalysisWorker(settings)


def make_report_builder():
    try:
        from analysis.report import build_report
    except Exception:
        log.warning("analysis.report not available: results carry no report section")
        return None
    return build_report


def make_sources(settings, *, pace: str = "real"):
    """Camera and microphone from kiosk.camera / kiosk.microphone: a device, or (a path to
    a video / WAV file) a file-backed source."""
    from hardware.camera import camera_from_settings
    from hardware.microphone import microphone_from_settings

    camera = camera_from_settings(settings, pace=pace, loop=True)
    mic = microphone_from_settings(settings, pace=pace, loop=False)
    return camera, mic


def follow_pushed_config(machine, store, file_settings, version: int | None
                         ) -> Callable[[object], None]:
    """A view subscriber: each time the machine is back at idle after a candidate, apply the
    config HR pushed meanwhile (never during an interview). Runs on the machine's thread."""
    from device.config import effective_settings
    from device.session import State

    last = {"state": machine.state, "version": version}

    def on_view(_view: object) -> None:
        state, was = machine.state, last["state"]
        last["state"] = state
        if state is not State.IDLE or was is State.IDLE:
            return
        settings, new_version = effective_settings(store, file_settings)
        if new_version != last["version"] and machine.reconfigure(settings):
            log.info("pushed config v%s in force from this interview on", new_version)
            last["version"] = new_version

    return on_view


def build_kiosk(settings, store, camera, mic, *, clock: Callable[[], float] = time.time,
                face_counter=None, analysis="auto", lang: str | None = None,
                media_root: Path | None = None):
    """The machine, pipeline and window for `settings`, with the given sources."""
    from device import session as ses
    from device import signin
    from device.audit import AuditLog
    from device.config import effective_settings
    from device.keys import derive_key, load_master_key
    from hardware.selftest import haar_face_detector, run_selftest
    from kiosk.capture import CapturePipeline
    from kiosk.window import KioskWindow

    master = load_master_key(settings.paths.key_dir)
    audit = AuditLog(store, derive_key(master, "audit"))
    # `settings` is the TOML file's; HR's pushed [session]/[retention] win for the keys they set.
    file_settings = settings
    settings, pushed = effective_settings(store, file_settings)
    if pushed is not None:
        log.info("pushed config v%d in force", pushed)
    machine = ses.SessionMachine(store, settings, clock=clock, report_builder=make_report_builder())
    machine.subscribe(follow_pushed_config(machine, store, file_settings, pushed))
    try:
        recovered = machine.recover()
        if recovered:
            log.info("closed %d unfinished session(s) as interrupted", len(recovered))
    except Exception:
        log.exception("recovering unfinished sessions failed")
    pipeline = CapturePipeline(
        camera, mic,
        face_counter=face_counter or haar_face_detector(),
        analysis=start_analysis(settings) if analysis == "auto" else analysis,
        media_dir=settings.paths.media_dir,
        media_key=derive_key(master, "media"),
        # The machine times the pause (session.face_lost_pause_s); this only debounces
        # the detector so one missed frame is not "left the frame".
        face_lost_after_s=1.0,
    )
    window = KioskWindow(settings, store, machine, pipeline, clock=clock, audit=audit,
                         media_root=media_root or Path(settings.paths.data_dir) / "bank-media",
                         signin=signin, selftest=run_selftest, lang=lang)
    return machine, pipeline, window
