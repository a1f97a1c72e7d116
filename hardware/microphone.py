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

from hardware.source import CaptureSource

log = logging.getLogger(__name__)

SAMPLERATE = 16000
CHUNK_S = 0.1
FLOOR_DBFS = -96.0
CLIP_LEVEL = 32000          # |sample| at or above this counts as clipped
CLIP_FRACTION = 0.01        # >1 % clipped samples in a chunk = clipping
SILENCE_DBFS = -50.0
# A microphone that delivers nothing for this long is treated as unplugged.
STALL_TIMEOUT_S = 1.0
# Opening a sound device and getting its first buffer can take a moment.
STARTUP_GRACE_S = 3.0


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


class _MeteredMic(CaptureSource[AudioChunk]):
    """Level meter, silence tracking and the read queue shared by both mics."""

    name = "microphone"
    item_kind = "chunk"
    stall_timeout_s = STALL_TIMEOUT_S
    startup_grace_s = STARTUP_GRACE_S

    def __init__(self, samplerate: int = SAMPLERATE, silence_s: float = 3.0) -> None:
        super().__init__()
        self.samplerate = samplerate
        self.silence_s = silence_s
        self._queue: queue.Queue[AudioChunk] = queue.Queue(maxsize=100)
        self._level = FLOOR_DBFS
        self._peak = FLOOR_DBFS
        self._clipping_until = 0.0
        self._loud_at = 0.0
        self.chunks_delivered = 0

    def on_chunk(self, cb: Callable[[AudioChunk], None]) -> None:
        self._data_cbs.append(cb)

    @property
    def level_dbfs(self) -> float:
        """Level of the most recent chunk; decays to the floor if nothing arrives."""
        if time.monotonic() - self._delivered_at > 0.5:
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

    def _on_start(self) -> None:
        self._loud_at = 0.0

    def _stall_detail(self, silent_for: float) -> str:
        return f"no audio for {silent_for:.1f} s"

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
        self._delivered_at = now
        self.chunks_delivered += 1
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:  # nobody reading: keep the newest
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._queue.put_nowait(chunk)
        self._publish(chunk)


class SoundDeviceMic(_MeteredMic):
    """A sound card input through PortAudio (sounddevice), by device index or name."""

    own_thread = False  # PortAudio calls back on its own thread

    def __init__(self, device: int | str | None = None, samplerate: int = SAMPLERATE, silence_s: float = 3.0) -> None:
        super().__init__(samplerate, silence_s)
        self.device = device
        self._stream = None

    def _open(self) -> None:
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

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio thread
        if status and status.input_overflow:
            log.warning("microphone input overflow")
        self._deliver(indata[:, 0].copy())

    def _close(self) -> None:
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
        self._rng = np.random.default_rng(7)

    def play(self, path: str | Path) -> None:
        data = _read_wav(Path(path))
        with self._lock:
            self._data, self._pos = data, 0

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._pos < len(self._data)

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
