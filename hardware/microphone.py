"""Microphone sources: a sounddevice input and a WAV-backed one, 16 kHz mono int16.

Chunks are delivered on a worker thread with a level meter (dBFS), clipping and silence
flags. A source must never block its caller and never pretend a dead device is quiet:
a stream that stops delivering flips `alive` to False and reports through `on_error`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

SAMPLERATE = 16000
CHUNK_S = 0.1
FLOOR_DBFS = -96.0
CLIP_LEVEL = 32000          # |sample| at or above this counts as clipped
CLIP_FRACTION = 0.01        # >1 % clipped samples in a chunk = clipping
SILENCE_DBFS = -50.0
STALL_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class AudioChunk:
    """100 ms of mono int16 PCM with its monotonic timestamp (start of the chunk)."""

    pcm: np.ndarray
    ts: float
    samplerate: int = SAMPLERATE

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.samplerate


class MicrophoneError(RuntimeError):
    """The microphone could not be opened or stopped delivering."""


class MicrophoneSource(Protocol):
    samplerate: int

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def read(self, timeout: float = 1.0) -> AudioChunk | None: ...
    def on_chunk(self, cb: Callable[[AudioChunk], None]) -> None: ...
    def on_error(self, cb: Callable[[str], None]) -> None: ...
    @property
    def level_dbfs(self) -> float: ...
    @property
    def alive(self) -> bool: ...


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 PCM in dBFS (0 = full scale, FLOOR_DBFS for digital silence)."""
    if pcm.size == 0:
        return FLOOR_DBFS
    rms = math.sqrt(float(np.mean(np.square(pcm.astype(np.float64)))))
    if rms <= 0:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 20.0 * math.log10(rms / 32768.0))


def is_clipping(pcm: np.ndarray) -> bool:
    if pcm.size == 0:
        return False
    return float(np.mean(np.abs(pcm.astype(np.int32)) >= CLIP_LEVEL)) > CLIP_FRACTION


class _MeteredMic:
    """Level meter, silence tracking, callbacks, queue and watchdog shared by both mics."""

    name = "microphone"

    def __init__(self, samplerate: int = SAMPLERATE, silence_s: float = 3.0) -> None:
        self.samplerate = samplerate
        self.silence_s = silence_s
        self._chunk_cbs: list[Callable[[AudioChunk], None]] = []
        self._error_cbs: list[Callable[[str], None]] = []
        self._queue: queue.Queue[AudioChunk] = queue.Queue(maxsize=100)
        self._level = FLOOR_DBFS
        self._peak = FLOOR_DBFS
        self._clipping_until = 0.0
        self._loud_at = 0.0
        self._last_chunk_at = 0.0
        self._started_at = 0.0
        self._alive = False
        self._failed: str | None = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.chunks_delivered = 0

    def on_chunk(self, cb: Callable[[AudioChunk], None]) -> None:
        self._chunk_cbs.append(cb)

    def on_error(self, cb: Callable[[str], None]) -> None:
        self._error_cbs.append(cb)

    @property
    def alive(self) -> bool:
        return self._alive and self._failed is None

    @property
    def error(self) -> str | None:
        return self._failed

    @property
    def level_dbfs(self) -> float:
        """Level of the most recent chunk; decays to the floor if nothing arrives."""
        if time.monotonic() - self._last_chunk_at > 0.5:
            return FLOOR_DBFS
        return self._level

    @property
    def clipping(self) -> bool:
        """True for a second after a clipped chunk, so a meter can show it."""
        return time.monotonic() < self._clipping_until

    @property
    def silent(self) -> bool:
        """No chunk above SILENCE_DBFS for `silence_s` seconds."""
        ref = self._loud_at or self._started_at
        return time.monotonic() - ref > self.silence_s

    def read(self, timeout: float = 1.0) -> AudioChunk | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _begin(self) -> None:
        self._stop.clear()
        self._alive = True
        self._failed = None
        self._started_at = time.monotonic()
        self._last_chunk_at = 0.0
        self._loud_at = 0.0
        self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True)
        self._watchdog.start()

    def _end(self) -> None:
        self._stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=2.0)
        self._watchdog = None
        self._alive = False

    def _deliver(self, pcm: np.ndarray, ts: float | None = None) -> None:
        now = time.monotonic()
        chunk = AudioChunk(pcm=pcm, ts=ts if ts is not None else now, samplerate=self.samplerate)
        lvl = level_dbfs(pcm)
        self._level = lvl
        self._peak = max(self._peak, lvl)
        if lvl > SILENCE_DBFS:
            self._loud_at = now
        if is_clipping(pcm):
            self._clipping_until = now + 1.0
        self._last_chunk_at = now
        self.chunks_delivered += 1
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:  # nobody reading: keep the newest
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._queue.put_nowait(chunk)
        for cb in list(self._chunk_cbs):
            try:
                cb(chunk)
            except Exception:
                log.exception("%s chunk callback failed", self.name)

    def _fail(self, detail: str) -> None:
        if self._failed is not None:
            return
        self._failed = detail
        self._alive = False
        log.error("%s lost: %s", self.name, detail)
        for cb in list(self._error_cbs):
            try:
                cb(detail)
            except Exception:
                log.exception("%s error callback failed", self.name)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            if self._failed is not None:
                return
            now = time.monotonic()
            ref = self._last_chunk_at or self._started_at
            grace = STALL_TIMEOUT_S if self._last_chunk_at else 3.0
            if now - ref > grace:
                self._fail(f"no audio for {now - ref:.1f} s")
                return


class SoundDeviceMic(_MeteredMic):
    """A sound card input through PortAudio (sounddevice), by device index or name."""

    def __init__(self, device: int | str | None = None, samplerate: int = SAMPLERATE, silence_s: float = 3.0) -> None:
        super().__init__(samplerate, silence_s)
        self.device = device
        self._stream = None

    def start(self) -> None:
        if self._stream is not None:
            if self._failed is None:
                return
            self.stop()  # reopening a lost device: start from scratch
        import sounddevice as sd

        device = int(self.device) if isinstance(self.device, str) and self.device.isdigit() else self.device
        try:
            self._stream = sd.InputStream(
                device=device,
                samplerate=self.samplerate,
                channels=1,
                dtype="int16",
                blocksize=int(self.samplerate * CHUNK_S),
                callback=self._callback,
            )
            self._stream.start()
        except Exception as exc:
            self._stream = None
            raise MicrophoneError(
                f"microphone {self.device!r} could not be opened: {exc} (check kiosk.microphone.device in config.toml)"
            ) from exc
        self._begin()

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio thread
        if status and status.input_overflow:
            log.warning("microphone input overflow")
        self._deliver(indata[:, 0].copy())

    def stop(self) -> None:
        self._end()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:
                log.exception("closing the microphone stream failed")
            self._stream = None


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wf:
        if wf.getsampwidth() != 2:
            raise MicrophoneError(f"{path}: expected 16-bit PCM WAV, got {8 * wf.getsampwidth()}-bit")
        rate, channels = wf.getframerate(), wf.getnchannels()
        data = np.frombuffer(wf.readframes(wf.getnframes()), dtype=np.int16)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != SAMPLERATE:
        raise MicrophoneError(f"{path}: expected {SAMPLERATE} Hz, got {rate} Hz (convert with sox -r 16000 -c 1 -b 16)")
    return data


class FileMic(_MeteredMic):
    """Plays a 16 kHz mono WAV through the microphone interface, at real pace or fast.

    After the file (or with no file) it delivers room silence like a real microphone, so
    the source stays alive; `play()` switches to another recording (the demo's candidate
    starting to speak).
    """

    name = "file-mic"

    def __init__(self, path: str | Path | None = None, pace: str = "real", loop: bool = False,
                 noise_dbfs: float = -70.0) -> None:
        super().__init__(SAMPLERATE)
        if pace not in ("real", "fast"):
            raise ValueError(f"FileMic pace must be 'real' or 'fast', got {pace!r}")
        self.pace = pace
        self.loop = loop
        self.noise_dbfs = noise_dbfs
        self._data = _read_wav(Path(path)) if path is not None else np.zeros(0, np.int16)
        self._pos = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rng = np.random.default_rng(7)

    def play(self, path: str | Path) -> None:
        data = _read_wav(Path(path))
        with self._lock:
            self._data, self._pos = data, 0

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._pos < len(self._data)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._begin()
        self._thread = threading.Thread(target=self._run, name="file-mic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._end()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    def _noise(self, n: int) -> np.ndarray:
        amp = 32768.0 * 10 ** (self.noise_dbfs / 20.0)
        return (self._rng.standard_normal(n) * amp).astype(np.int16)

    def _run(self) -> None:
        n = int(SAMPLERATE * CHUNK_S)
        due = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if self._pos >= len(self._data) and self.loop and len(self._data):
                    self._pos = 0
                part = self._data[self._pos:self._pos + n]
                self._pos += len(part)
            if len(part) < n:
                part = np.concatenate([part, self._noise(n - len(part))])
            self._deliver(part.copy(), ts=due if self.pace == "real" else None)
            if self.pace == "fast":
                time.sleep(0.001)
                continue
            due += CHUNK_S
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:
                due = time.monotonic()


def is_wav_file(device: int | str | None) -> bool:
    """kiosk.microphone.device names a WAV file rather than a sound device."""
    return isinstance(device, str) and device.lower().endswith(".wav")


def microphone_from_settings(settings, *, pace: str = "real", loop: bool = False) -> MicrophoneSource:
    """The configured microphone, opened the same way by the kiosk and by the self-test.

    kiosk.microphone.device: "" (the system default), a sound device name or index
    (5 or "5") -> SoundDeviceMic at kiosk.microphone.samplerate; a path ending in .wav ->
    FileMic playing it (then room silence, or looping with loop=True).
    """
    mic = settings.kiosk.microphone
    dev = mic.device
    if is_wav_file(dev):
        return FileMic(dev, pace=pace, loop=loop)
    if dev == "" or dev is None:
        dev = None
    elif isinstance(dev, str) and dev.isdigit():
        dev = int(dev)
    return SoundDeviceMic(dev, mic.samplerate)
