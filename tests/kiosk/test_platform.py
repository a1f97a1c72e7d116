"""The kiosk as a systemd service and with HR's prompt media: READY/WATCHDOG reach
$NOTIFY_SOCKET, and a question's picture is shown."""

from __future__ import annotations

import shutil
import socket

import pytest

from device.questions import current_bank
from kiosk.demo import examples_dir

pytestmark = pytest.mark.timeout(60)


def test_ready_and_watchdog_reach_systemd(make_kiosk, tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)   # the test runs on the GUI thread: never block its event loop
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")   # 1 s: the kiosk pings every 0.5 s
    try:
        k = make_kiosk()
        got: set[str] = set()

        def received() -> bool:
            try:
                while True:
                    got.add(sock.recv(256).decode())
            except BlockingIOError:
                pass
            return {"READY=1", "WATCHDOG=1"} <= got

        k.qtbot.waitUntil(received, timeout=5000)
        assert {"READY=1", "WATCHDOG=1"} <= got
    finally:
        sock.close()


def test_an_image_prompt_is_shown_with_its_question(make_kiosk):
    k = make_kiosk()
    media_root = k.settings.paths.data_dir / "bank-media"
    shutil.copytree(examples_dir() / "media", media_root / "media")
    question = current_bank(k.store).question("op-02")
    assert question.media.kind == "image"
    k.window._show_prompt_media(question)
    assert k.window.question.media.isVisibleTo(k.window.question)
    assert not k.window.question.media.pixmap().isNull()
    # A path escaping the media folder is refused, not opened.
    assert k.window._media_path("../../keys/master.key") is None
