"""Synthetic test and demo media: spoken answers (espeak-ng + sox) and face videos made from
a real photo (skimage.data.astronaut()). Used by tests, benchmarks and the demo; it must
never be used on a real terminal's camera or microphone path, and never fetches anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

# espeak-ng voice per language of the interview (the job's language). The Klatt variant of
# the US voice is the one pocketsphinx's bundled model transcribes best (measured: mean WER
# 0.27 against 0.57 for the default variant on the same answers).
VOICES = {"en": "en-us+klatt", "zh": "cmn", "ko": "ko"}
# espeak-ng speaking rate, words a minute. Measured with pocketsphinx's bundled model on the
# Klatt voice (mean WER; deterministic, so not affected by machine load): the six English
# sample answers 0.21 at 150, 0.27 at 135, 0.32 at 125; the kiosk demo's three answers
# 0.32 at 175, 0.27 at 160, 0.24 at 150, 0.25 at 140, 0.26 at 135. 150 is the best overall.
SPEECH_WPM = 150
# A real microphone never delivers digital silence; recognizers' feature normalisation
# misbehaves on exact zeros. Gaussian noise of this RMS (about -61 dBFS) is mixed in.
NOISE_FLOOR_RMS = 30.0
SEGMENTS = ("present", "away", "absent", "two_faces", "dark")
AWAY_YAW_DEG = 40.0  # how far the head is turned in "away" segments

# Face box of skimage.data.astronaut() (512x512), measured with mediapipe's face detector:
# x 174-278, y 68-172. The crop keeps hair, ears and neck so the detector sees a head.
_CROP = (110, 0, 350, 260)  # x0, y0, x1, y1 in the photo
_FACE_IN_CROP = (64 + 52, 68 + 52)  # face centre inside the crop (x, y)


class SyntheticMediaError(RuntimeError):
    """A tool (espeak-ng, sox, a video codec) is missing or failed; the message says which."""


def _run(cmd: list[str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise SyntheticMediaError(
            f"{cmd[0]} is not installed (Debian package {cmd[0]}); it is needed for synthetic speech"
        )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SyntheticMediaError(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[:300]}")


def speak(
    text: str,
    lang: str,
    out_wav: str | Path,
    *,
    speed_wpm: int = SPEECH_WPM,
    pad_s: float = 0.5,
    noise_rms: float = NOISE_FLOOR_RMS,
) -> Path:
    """Speak `text` in `lang` ("en", "zh", "ko") into a 16 kHz mono int16 WAV.

    `speed_wpm` is espeak-ng's rate (SPEECH_WPM, the one pocketsphinx transcribes best).
    `pad_s` seconds of quiet go before and after, as a person pauses before answering; a
    room-like noise floor of `noise_rms` (seeded by the text: same text, same file) is mixed in."""
    if lang not in VOICES:
        raise ValueError(f"speak: unsupported language {lang!r}; expected one of {sorted(VOICES)}")
    out = Path(out_wav)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        _run(["espeak-ng", "-v", VOICES[lang], "-s", str(speed_wpm), "-w", str(raw), text])
        cmd = [
            "sox",
            "-R",  # repeatable dither: same text, same samples
            str(raw),
            "-r",
            "16000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(out),
        ]
        if pad_s > 0:
            cmd += ["pad", f"{pad_s}", f"{pad_s}"]
        _run(cmd)
    if noise_rms > 0:
        import wave

        pcm = read_wav(out).astype(np.float32)
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        pcm += np.random.default_rng(seed).normal(0.0, noise_rms, pcm.shape)
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(np.clip(np.round(pcm), -32768, 32767).astype(np.int16).tobytes())
    return out


def read_wav(path: str | Path) -> np.ndarray:
    """The int16 samples of a 16 kHz mono WAV (as written by `speak`)."""
    import wave

    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected mono 16-bit PCM")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


# --------------------------------------------------------------------------- faces


def _astronaut_rgb() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _background(size: tuple[int, int]) -> np.ndarray:
    """A plain office wall with a door and a picture frame: textured, deterministic, faceless."""
    w, h = size
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    wall = 150 + 40 * y + 15 * x
    img = np.stack([wall * 0.95, wall * 0.98, wall * 1.02], axis=-1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    cv2.rectangle(img, (int(w * 0.04), int(h * 0.15)), (int(w * 0.18), h), (90, 110, 140), -1)
    cv2.rectangle(
        img, (int(w * 0.75), int(h * 0.12)), (int(w * 0.93), int(h * 0.38)), (60, 60, 60), 4
    )
    cv2.rectangle(img, (0, int(h * 0.88)), (w, h), (70, 80, 85), -1)
    return img


def _mesh_triangles() -> list[tuple[int, int, int]]:
    """The face mesh's triangles, recovered from its tessellation edges (3-cycles)."""
    import mediapipe as mp

    edges = mp.solutions.face_mesh.FACEMESH_TESSELATION
    adj: dict[int, set[int]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]}
    return sorted(tris)


def _turned(crop: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Render the photo's face turned sideways by `yaw_deg` about a vertical axis behind it:
    fit the 3D face mesh, rotate it, and draw its textured triangles back to front over the
    photo with the frontal face painted out. A 2D squeeze does not read as a turn; this does."""
    import mediapipe as mp

    h, w = crop.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True) as fm:
        res = fm.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    if not res.multi_face_landmarks:
        raise SyntheticMediaError("face mesh found no face in the source photo")
    pts = np.array(
        [(p.x * w, p.y * h, p.z * w) for p in res.multi_face_landmarks[0].landmark], np.float32
    )
    hull = cv2.convexHull(pts[:, :2].astype(np.int32))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    out = cv2.inpaint(crop, cv2.dilate(mask, np.ones((7, 7), np.uint8)), 7, cv2.INPAINT_TELEA)
    width = float(pts[:, 0].max() - pts[:, 0].min())
    cx, cz = float(pts[:, 0].mean()), float(pts[:, 2].mean()) + 0.45 * width
    th = math.radians(yaw_deg)
    rot = pts.copy()
    rot[:, 0] = cx + (pts[:, 0] - cx) * math.cos(th) + (pts[:, 2] - cz) * math.sin(th)
    rot[:, 2] = cz - (pts[:, 0] - cx) * math.sin(th) + (pts[:, 2] - cz) * math.cos(th)
    for tri in sorted(_mesh_triangles(), key=lambda t: -float(rot[list(t), 2].mean())):
        src, dst = pts[list(tri), :2], rot[list(tri), :2]
        a_src = np.cross(src[1] - src[0], src[2] - src[0])
        a_dst = np.cross(dst[1] - dst[0], dst[2] - dst[0])
        if a_src * a_dst <= 0 or abs(a_dst) < 0.5:
            continue  # facing away from the camera after the turn
        x, y, bw, bh = cv2.boundingRect(dst.astype(np.float32))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw + 1, w), min(y + bh + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        m = cv2.getAffineTransform(src.astype(np.float32), (dst - [x0, y0]).astype(np.float32))
        patch = cv2.warpAffine(
            crop, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        sel = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(sel, np.round(dst - [x0, y0]).astype(np.int32), 1)
        region = out[y0:y1, x0:x1]
        region[sel > 0] = patch[sel > 0]
    return out


@functools.lru_cache(maxsize=4)
def _soft_mask(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2 + 10), (w // 2 - 6, h // 2 + 30), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (21, 21), 0)


def _place(
    canvas: np.ndarray,
    crop: np.ndarray,
    centre: tuple[float, float],
    scale: float,
    angle_deg: float,
) -> None:
    """Paste `crop` scaled/rotated about the face centre so the face lands at `centre`,
    with a soft elliptical mask so no rectangle edge shows. Only the region the crop lands
    on is warped and blended (a full-frame blend per frame made videos slow to write)."""
    h, w = crop.shape[:2]
    fx, fy = _FACE_IN_CROP
    m = cv2.getRotationMatrix2D((fx, fy), angle_deg, scale)
    m[0, 2] += centre[0] - fx
    m[1, 2] += centre[1] - fy
    H, W = canvas.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0, y0 = max(int(corners[:, 0].min()) - 1, 0), max(int(corners[:, 1].min()) - 1, 0)
    x1, y1 = min(int(corners[:, 0].max()) + 2, W), min(int(corners[:, 1].max()) + 2, H)
    if x1 <= x0 or y1 <= y0:
        return
    m_roi = m.copy()
    m_roi[0, 2] -= x0
    m_roi[1, 2] -= y0
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(crop, m_roi, size, flags=cv2.INTER_LINEAR).astype(np.float32)
    mw = cv2.warpAffine(_soft_mask(h, w), m_roi, size, flags=cv2.INTER_LINEAR)[..., None]
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (roi + (warped - roi) * mw).astype(np.uint8)


def face_frame(
    segment: str,
    t: float,
    size: tuple[int, int] = (640, 480),
    *,
    _cache: dict | None = None,
) -> np.ndarray:
    """One BGR frame of `segment` at time `t` seconds (small natural motion over time)."""
    if segment not in SEGMENTS:
        raise ValueError(f"face_frame: unknown segment {segment!r}; expected one of {SEGMENTS}")
    cache = _cache if _cache is not None else {}
    if "crop" not in cache:
        rgb = _astronaut_rgb()
        x0, y0, x1, y1 = _CROP
        cache["crop"] = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2BGR)
        cache["bg"] = _background(size)
    if segment == "away" and "turned" not in cache:
        cache["turned"] = _turned(cache["crop"], AWAY_YAW_DEG)
    w, h = size
    frame = cache["bg"].copy()
    # Deterministic small motion: a person sways, nods and leans a little.
    dx = 10 * math.sin(2 * math.pi * t / 3.1)
    dy = 6 * math.sin(2 * math.pi * t / 4.3)
    ang = 4 * math.sin(2 * math.pi * t / 5.3)
    sc = 1.0 + 0.05 * math.sin(2 * math.pi * t / 3.7)
    gain = 1.0 + 0.08 * math.sin(2 * math.pi * t / 2.9)
    base_scale = 1.35 * h / 480
    if segment in ("present", "dark"):
        _place(frame, cache["crop"], (w / 2 + dx, h * 0.42 + dy), base_scale * sc, ang)
    elif segment == "away":
        _place(frame, cache["turned"], (w / 2 + dx, h * 0.42 + dy), base_scale * sc, ang)
    elif segment == "two_faces":
        _place(frame, cache["crop"], (w * 0.30 + dx, h * 0.42 + dy), base_scale * 0.85, ang)
        _place(frame, cache["crop"], (w * 0.72 - dx, h * 0.45), base_scale * 0.75, -ang)
    if segment == "dark":
        gain = 0.12
    return cv2.convertScaleAbs(frame, alpha=gain)


def _normalise_script(
    seconds: float, script: Sequence[tuple[str, float]] | None
) -> list[tuple[str, float]]:
    if not script:
        return [("present", float(seconds))]
    out: list[tuple[str, float]] = []
    left = float(seconds)
    for seg, dur in script:
        if seg not in SEGMENTS:
            raise ValueError(
                f"face_video script: unknown segment {seg!r}; expected one of {SEGMENTS}"
            )
        take = min(float(dur), left)
        if take > 0:
            out.append((seg, take))
            left -= take
    if left > 1e-9:  # the script is shorter than the video: hold the last segment
        out[-1] = (out[-1][0], out[-1][1] + left) if out else ("present", left)
    return out


def segment_at(script: Sequence[tuple[str, float]], t: float) -> str:
    """Which segment of a script is on screen at time `t` (ground truth for tests)."""
    end = 0.0
    for seg, dur in script:
        end += dur
        if t < end:
            return seg
    return script[-1][0]


def face_video(
    out_path: str | Path,
    seconds: float,
    fps: int = 30,
    size: tuple[int, int] = (640, 480),
    script: Sequence[tuple[str, float]] | None = None,
) -> Path:
    """Write a face video of `seconds` seconds: `script` is [(segment, seconds), ...] played in
    order (cut at `seconds`, the last segment held if it is shorter). `.mp4` uses mp4v,
    `.avi` uses MJPG; both are read back by this OpenCV."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    codec = "MJPG" if out.suffix.lower() == ".avi" else "mp4v"
    plan = _normalise_script(seconds, script)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), float(fps), size)
    if not writer.isOpened():
        raise SyntheticMediaError(f"OpenCV cannot write {codec} video to {out}")
    cache: dict = {}
    n = int(round(sum(d for _, d in plan) * fps))
    try:
        for i in range(n):
            t = i / fps
            writer.write(face_frame(segment_at(plan, t), t, size, _cache=cache))
    finally:
        writer.release()
    return out


# --------------------------------------------------------------------------- demo


# Spoken answers for the demo interview (English: pocketsphinx transcribes it out of the
# box). Written to hit typical rubric keywords and the STAR structure.
DEMO_ANSWERS: tuple[str, ...] = (
    "Hello, my name is Alex. I have worked for three years in customer service at a retail "
    "store, where I helped customers, handled complaints and trained new team members.",
    "Last year a customer was angry because his order was late. My task was to solve the "
    "problem quickly. I listened carefully, apologised, and I called the warehouse to find "
    "the order. As a result the customer received it the next day and he thanked our team.",
    "I work well in a team. When a colleague is busy I help them, and I always communicate "
    "clearly so that we finish the work on time and keep the store safe and clean.",
)
DEMO_SCRIPT: tuple[tuple[str, float], ...] = (
    ("present", 6.0),
    ("away", 1.5),
    ("present", 6.0),
    ("absent", 1.0),
    ("present", 6.0),
)


@dataclass(frozen=True)
class DemoAssets:
    """Media for the demo interview: one face video and one spoken answer per question."""

    video: Path
    answers: list[Path] = field(default_factory=list)
    texts: tuple[str, ...] = DEMO_ANSWERS
    language: str = "en"


def demo_assets(
    cache_dir: str | Path = "var/demo-assets",
    *,
    answers: Sequence[str] = DEMO_ANSWERS,
    language: str = "en",
) -> DemoAssets:
    """Make (once) and return the demo media under `cache_dir`; later calls reuse the files
    while the texts and this generator stay the same."""
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(
        json.dumps(
            {"v": 1, "answers": list(answers), "lang": language, "script": DEMO_SCRIPT}
        ).encode()
    ).hexdigest()[:12]
    video = root / f"demo-face-{key}.mp4"
    wavs = [root / f"demo-answer-{key}-{i + 1}.wav" for i in range(len(answers))]
    for text, wav in zip(answers, wavs, strict=True):
        if not wav.exists():
            tmp = wav.with_suffix(".tmp.wav")
            speak(text, language, tmp, speed_wpm=SPEECH_WPM)
            tmp.replace(wav)
    if not video.exists():
        tmp = video.with_name(video.stem + ".tmp.mp4")
        face_video(tmp, sum(d for _, d in DEMO_SCRIPT), script=DEMO_SCRIPT)
        tmp.replace(video)
    return DemoAssets(video=video, answers=wavs, texts=tuple(answers), language=language)


def held_up_code(png: str | Path, *, frame_h: int, px_per_module: float, seed: int,
                 drawn_px_per_module: int = 10) -> np.ndarray:
    """A 16:9 camera frame of a QR code PNG held up to the camera: the code at
    ``px_per_module`` camera pixels per module, at a random place, tilted in perspective by up
    to 3 % of the frame, slightly out of focus (Gaussian sigma 0.8) and with sensor noise
    (sigma 6 grey levels), in front of a grey wall. ``drawn_px_per_module`` is the PNG's own
    scale (10 for what sync.enrolment.write_bundle and sync.wecom.invite draw)."""
    rng = np.random.default_rng(seed)
    code = cv2.imread(str(png))
    if code is None:
        raise FileNotFoundError(f"{png}: not a readable image")
    side = int(code.shape[0] / drawn_px_per_module * px_per_module)
    h, w = frame_h, frame_h * 16 // 9
    if side >= h:
        raise ValueError(f"a {side}px code does not fit a {h}px-high frame")
    frame = np.full((h, w, 3), 200, np.uint8)
    y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    frame[y:y + side, x:x + side] = cv2.resize(code, (side, side), interpolation=cv2.INTER_AREA)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(0, 0.03, (4, 2)) * [w, h] * [[1, 1], [-1, 1], [-1, -1], [1, -1]]
    frame = cv2.warpPerspective(frame, cv2.getPerspectiveTransform(src, np.float32(src + jitter)), (w, h),
                                borderValue=(200, 200, 200))
    frame = cv2.GaussianBlur(frame, (3, 3), 0.8)
    noise = rng.normal(0, 6, frame.shape)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
