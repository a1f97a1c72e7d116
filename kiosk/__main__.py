"""`interview-kiosk`: the terminal's full-screen interview UI (and `--demo`).

Parses arguments, loads the settings, wires the parts and runs the Qt event loop. Errors a
technician can fix (config, keys, camera) are printed as one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from device.version import software_version

log = logging.getLogger("kiosk")

# The screens are laid out for a 1280x800 terminal (logical pixels); style.stylesheet grows
# the type on larger ones. A smaller panel (down to hardware.selftest.MIN_DISPLAY, 1024x600)
# gets Qt's own scale factor, so everything, type and fixed sizes alike, shrinks together.
DESIGN_SIZE = (1280, 800)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="interview-kiosk",
        description="The interview terminal's full-screen UI. 面试终端全屏界面。",
    )
    p.add_argument("--config", help="config file (default: $INTERVIEW_KIOSK_CONFIG, "
                                     "/etc/interview-kiosk/config.toml, ./var/config.toml in a checkout)")
    p.add_argument("--demo", action="store_true",
                   help="run a complete interview with a synthetic candidate on a throw-away device")
    p.add_argument("--headless", action="store_true",
                   help="no display: run offscreen (with --demo, save a screenshot of every screen)")
    p.add_argument("--out", default="var/demo", help="demo output folder (default var/demo)")
    p.add_argument("--lang", choices=("zh", "en"), help="start language (default: device.default_language)")
    p.add_argument("--windowed", action="store_true", help="a 1280x800 window instead of full screen")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"interview-kiosk {software_version()}")
    return p.parse_args(argv)


def display_scale(width: int, height: int) -> float | None:
    """The QT_SCALE_FACTOR that makes a `width` x `height` display at least DESIGN_SIZE in
    logical pixels, or None when it already is."""
    factor = min(width / DESIGN_SIZE[0], height / DESIGN_SIZE[1])
    return None if factor >= 1.0 else round(factor, 4)


def _restart_scaled(app, args: argparse.Namespace) -> None:
    """On a display smaller than the design, start again with Qt's scale factor set (it is
    read once, when the application is made). Nothing is open yet; under systemd the
    process keeps its pid. A QT_SCALE_FACTOR already set (by the technician) is kept."""
    screen = app.primaryScreen()
    if args.headless or screen is None or "QT_SCALE_FACTOR" in os.environ:
        return
    g = screen.geometry()
    factor = display_scale(g.width(), g.height())
    if factor is None:
        return
    log.info("display %dx%d is smaller than %dx%d: restarting with QT_SCALE_FACTOR=%s",
             g.width(), g.height(), *DESIGN_SIZE, factor)
    os.environ["QT_SCALE_FACTOR"] = str(factor)
    sys.stdout.flush()
    sys.stderr.flush()
    if getattr(sys, "frozen", False):   # the PyInstaller bundle is its own interpreter
        os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    os.execv(sys.executable, [sys.executable, "-m", "kiosk", *sys.argv[1:]])


def run(args: argparse.Namespace) -> int:
    from kiosk.qt import make_app

    app = make_app(headless=args.headless)
    _restart_scaled(app, args)
    from device.config import ConfigError, load_settings, resolve_config_path
    from device.keys import DeviceKeyError
    from device.store import Store, StoreError
    from hardware.camera import CameraError
    from hardware.microphone import MicrophoneError
    from kiosk.app import build_kiosk, make_sources

    path = resolve_config_path(args.config)
    try:
        settings = load_settings(path)
        store = Store.open_from_settings(settings)
    except (ConfigError, DeviceKeyError, StoreError) as exc:
        print(f"interview-kiosk: {exc}", file=sys.stderr)
        return 2
    try:
        camera, mic = make_sources(settings)
        machine, pipeline, window = build_kiosk(settings, store, camera, mic, lang=args.lang)
    except (CameraError, MicrophoneError, DeviceKeyError) as exc:
        print(f"interview-kiosk: {exc}", file=sys.stderr)
        store.close()
        return 3
    screen = app.primaryScreen()
    if settings.kiosk.fullscreen and not args.windowed and screen is not None:
        # Without a window manager (eglfs, bare X) the geometry must be set before full screen.
        window.setGeometry(screen.geometry())
        window.setFixedSize(screen.geometry().size())   # content never resizes the kiosk
        window.showFullScreen()
    else:
        window.setFixedSize(1280, 800)
        window.show()
    window.start()
    code = app.exec()
    window.stop()
    store.close()
    return int(code)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.demo:
        from kiosk.demo import run_demo

        code = run_demo(Path(args.out), headless=args.headless)
    else:
        code = run(args)
    _exit(code)
    return code


def _exit(code: int) -> None:
    """Leave without the interpreter's final garbage collection: the store is closed and
    the logs flushed by now, and tearing down Qt, OpenCV and mediapipe objects in arbitrary
    order at exit is where native extensions crash, which would turn a good run into a
    failed `make demo` or a systemd restart loop."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
