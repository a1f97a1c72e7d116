"""Camera and microphone sources (real devices and file-backed ones) and the self-test.

Nothing here imports Qt or writes candidate data to disk; recording is the kiosk's job.
"""

from hardware.camera import CameraError, CameraSource, FileCamera, Frame, OpenCVCamera
from hardware.microphone import (
    AudioChunk,
    FileMic,
    MicrophoneError,
    MicrophoneSource,
    SoundDeviceMic,
)

__all__ = [
    "AudioChunk", "CameraError", "CameraSource", "FileCamera", "FileMic", "Frame",
    "MicrophoneError", "MicrophoneSource", "OpenCVCamera", "SoundDeviceMic",
]
