"""What every capture source shares: callbacks, alive/error state, worker thread, watchdog.

`CaptureSource` is the base of the cameras and microphones; they add only opening the
device and producing a frame or chunk. It must never let a consumer's exception stop
capture, never log what was captured, and never hide a lost device: `alive` turns False
and `on_error` callbacks fire exactly once per loss.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


def _describe(exc: BaseException) -> str:
    """An exception as its type and where it was raised, without its message: a consumer's
    message can quote what it was given (a transcript, an answer), which must not reach a log."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name}" if tb else ""
    return f"{type(exc).__name__}{where}"


class CaptureSource(Generic[Item]):
    """Start/stop, callbacks, alive/error state and the stall watchdog of one source.

    A subclass sets `name` and `item_kind`, implements `_open`/`_close` for its device and,
    if it reads on a thread of its own (`own_thread`), `_run`, a loop that returns soon after
    `self._stop` is set. Whoever produces an item sets `self._delivered_at` (monotonic) and
    hands it to `_publish`; a driver error goes to `_fail`.
    """

    name = "source"
    item_kind = "item"          # for log lines: "camera frame callback failed"
    own_thread = True           # False when the driver calls back on its own thread
    stall_timeout_s = 1.0       # nothing delivered for this long after the first item = lost
    startup_grace_s = 3.0       # ... or for this long after start() before the first one

    def __init__(self) -> None:
        self._data_cbs: list[Callable[[Item], None]] = []
        self._error_cbs: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._fail_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._alive = False
        self._failed: str | None = None
        self._started_at = 0.0
        self._delivered_at = 0.0

    # -- public interface -------------------------------------------------------------
    def on_error(self, cb: Callable[[str], None]) -> None:
        self._error_cbs.append(cb)

    @property
    def alive(self) -> bool:
        return self._alive and self._failed is None

    @property
    def error(self) -> str | None:
        return self._failed

    def start(self) -> None:
        """Open the device and start delivering; a no-op while running, a fresh reopen after
        a loss (the device was replugged). Raises the subclass's error if it cannot open."""
        if self._watchdog is not None:
            if self._failed is None:
                return
            self.stop()
        self._open()
        self._stop.clear()
        self._alive = True
        self._failed = None
        self._started_at = time.monotonic()
        self._delivered_at = 0.0
        self._on_start()
        if self.own_thread:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-capture", daemon=True)
            self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop delivering, join the threads and close the device. Safe to call twice, before
        start(), and from a callback (the calling thread is not joined)."""
        self._stop.set()
        for t in (self._thread, self._watchdog):
            if t is not None and t is not threading.current_thread():
                t.join(timeout=2.0)
        self._thread = None
        self._watchdog = None
        self._alive = False
        self._close()
        self._wake()

    # -- for subclasses ---------------------------------------------------------------
    def _open(self) -> None:
        """Open the device; raise a clear error naming it if that fails."""

    def _close(self) -> None:
        """Release the device; called by stop(), also when it was never opened."""

    def _on_start(self) -> None:
        """Reset per-run state, after the device opened and before delivery is watched."""

    def _run(self) -> None:  # pragma: no cover - overridden when own_thread
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake anyone blocked waiting for an item: the source failed or stopped."""

    def _stall_detail(self, silent_for: float) -> str:
        return f"no {self.item_kind} for {silent_for:.1f} s"

    def _startup_detail(self, waited: float) -> str:
        return self._stall_detail(waited)

    # -- machinery --------------------------------------------------------------------
    def _publish(self, item: Item) -> None:
        """Hand an item to every callback; one that raises is logged and skipped."""
        for cb in list(self._data_cbs):
            try:
                cb(item)
            except Exception as exc:  # a bad consumer must not kill capture
                log.error("%s %s callback failed: %s", self.name, self.item_kind, _describe(exc))

    def _fail(self, detail: str) -> None:
        """Report the device lost, once: alive turns False and on_error callbacks run."""
        with self._fail_lock:  # the worker and the watchdog can both see the loss
            if self._failed is not None:
                return
            self._failed = detail
            self._alive = False
        log.error("%s lost: %s", self.name, detail)
        self._wake()
        for cb in list(self._error_cbs):
            try:
                cb(detail)
            except Exception as exc:
                log.error("%s error callback failed: %s", self.name, _describe(exc))

    def _watch(self) -> None:
        # A blocked driver read never returns, so a separate thread judges liveness.
        while not self._stop.wait(0.1):
            if self._failed is not None:
                return
            now = time.monotonic()
            if self._delivered_at:
                if now - self._delivered_at > self.stall_timeout_s:
                    self._fail(self._stall_detail(now - self._delivered_at))
                    return
            elif now - self._started_at > self.startup_grace_s:
                self._fail(self._startup_detail(now - self._started_at))
                return
