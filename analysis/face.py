"""Face and attention signals per camera frame (mediapipe face mesh with iris landmarks), and
their per-answer aggregate. It measures; it never stores or logs a face image, and all
mediapipe use stays behind FaceAnalyzer so a move to the Tasks API touches this module only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Landmark indices of mediapipe's 478-point face mesh (refine_landmarks=True adds the irises).
# "Right"/"left" are the person's: the person's right eye is on the image's left.
NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10
CHEEK_R, CHEEK_L = 234, 454
EYE_R_OUTER, EYE_R_INNER, EYE_R_TOP, EYE_R_BOTTOM = 33, 133, 159, 145
EYE_L_OUTER, EYE_L_INNER, EYE_L_TOP, EYE_L_BOTTOM = 263, 362, 386, 374
IRIS_R, IRIS_L = 468, 473
MOUTH_R, MOUTH_L, LIP_TOP, LIP_BOTTOM = 61, 291, 13, 14

# Thresholds, chosen so a person talking to the screen is "facing" and a head turned to a
# neighbour or down to a phone is not. Exposed in every aggregate so HR sees them.
YAW_LIMIT_DEG = 25.0
PITCH_LIMIT_DEG = 25.0
GAZE_LIMIT = 0.45  # iris offset from the eye centre, -1..1 of half the eye width
SMILE_WIDTH_RATIO = 0.60  # mouth width / outer eye-corner distance above which we call it a smile
MOUTH_OPEN_RATIO = 0.08  # lip gap / mouth-to-forehead height
DARK_LEVEL, BRIGHT_LEVEL = 60.0, 215.0  # mean grey level of the face area (0-255)
BLUR_LEVEL = 40.0  # variance of the Laplacian of the face area scaled to 128 px
SMALL_FACE = 0.12  # face width / frame width
OFF_CENTRE = 0.30  # face-centre distance from the frame centre / frame size

HINTS: dict[str, tuple[str, str]] = {
    # code: (zh, en) - what the candidate can do about it, in plain words
    "no_face": (
        "看不到您的脸：请正对屏幕坐好。",
        "We can't see your face: please sit facing the screen.",
    ),
    "too_dark": (
        "光线太暗：请面向光源，或请工作人员开灯。",
        "It's too dark: face the light, or ask staff to turn a light on.",
    ),
    "too_bright": (
        "光线太强：请避开身后的窗户或强光。",
        "It's too bright: move away from the window or strong light behind you.",
    ),
    "blurred": (
        "画面模糊：请保持不动，或擦一擦摄像头。",
        "The picture is blurred: hold still, or wipe the camera lens.",
    ),
    "face_too_small": (
        "离得太远了：请靠近屏幕一些。",
        "You're too far away: please come a little closer to the screen.",
    ),
    "off_centre": ("请移到画面中间。", "Please move to the middle of the picture."),
    "multiple_faces": (
        "画面里有其他人：请确保只有您一人。",
        "Someone else is in the picture: please make sure only you are in view.",
    ),
}
QUALITY_ORDER = (
    "no_face",
    "multiple_faces",
    "too_dark",
    "too_bright",
    "blurred",
    "face_too_small",
    "off_centre",
)


def quality_hint(code: str, lang: str) -> str:
    """The candidate-facing hint for a quality code, in "zh" or "en"."""
    zh, en = HINTS[code]
    return zh if lang.startswith("zh") else en


@dataclass
class FaceObservation:
    """What one frame shows. Angles in degrees; ratios unitless; box normalised to the frame."""

    faces: int
    box: tuple[float, float, float, float] | None = None  # x, y, w, h of the main face
    yaw: float | None = None  # + = the person turned to their left (image right)
    pitch: float | None = None  # + = looking down
    roll: float | None = None
    facing: bool | None = None
    gaze: tuple[float, float] | None = None  # iris offset (x, y), -1..1; 0 = straight ahead
    looking: bool | None = None  # facing and eyes towards the screen
    mouth_open: float | None = None
    smile: float | None = None
    smiling: bool | None = None
    brightness: float = 0.0
    sharpness: float | None = None
    quality: list[str] = field(default_factory=list)
    landmarks: np.ndarray | None = field(default=None, repr=False)  # 478x3 pixels, main face

    def hint(self, lang: str) -> str | None:
        """The most important thing the candidate can fix, or None when the picture is fine."""
        for code in QUALITY_ORDER:
            if code in self.quality:
                return quality_hint(code, lang)
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("landmarks")
        return d


def _angle(dy: float, dx: float) -> float:
    return math.degrees(math.atan2(dy, dx))


def head_pose(pts: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) from mesh landmarks in pixels (x, y, z with z scaled like x).

    Geometric rather than solvePnP against a generic head: the mesh's own depth estimate
    already encodes the rotation, and the nose's position between the cheeks keeps yaw
    honest when depth is flat."""
    r, left = pts[CHEEK_R], pts[CHEEK_L]
    across = left - r
    roll = _angle(across[1], across[0])
    # Yaw from two cues, averaged: depth difference across the face, and the nose tip's
    # position between the cheek contours (0.5 = centred).
    yaw_depth = _angle(across[2], math.hypot(across[0], across[1]))
    width = float(np.linalg.norm(across[:2])) or 1.0
    u = across[:2] / width
    t = float(np.dot(pts[NOSE_TIP][:2] - r[:2], u)) / width
    # For a real head the nose tip sits about half a face-width in front of the cheek
    # contours, so 2t - 1 ~ tan(yaw).
    yaw_nose = math.degrees(math.atan(2.0 * t - 1.0))
    # The larger cue wins: the mesh flattens depth on turned faces, the nose cue saturates
    # on near-profile ones; either alone under-reads a turned head.
    yaw = yaw_depth if abs(yaw_depth) > abs(yaw_nose) else yaw_nose
    down = pts[CHIN] - pts[FOREHEAD]
    pitch_depth = _angle(-down[2], math.hypot(down[0], down[1]))
    # Nose tip between forehead and chin: ~0.55 straight ahead, more when looking down.
    height = float(np.linalg.norm(down[:2])) or 1.0
    v = down[:2] / height
    s = float(np.dot(pts[NOSE_TIP][:2] - pts[FOREHEAD][:2], v)) / height
    pitch_nose = math.degrees(math.asin(max(-1.0, min(1.0, 2.5 * (s - 0.58)))))
    pitch = 0.5 * (pitch_depth + pitch_nose)
    return yaw, pitch, roll


def _eye_offset(
    pts: np.ndarray, a_idx: int, b_idx: int, top: int, bottom: int, iris: int
) -> tuple[float, float]:
    """Iris offset in one eye: x along the corner line from a (image left) to b (image
    right), y across it (down +), both -1..1 of half the eye's width."""
    a, b = pts[a_idx][:2], pts[b_idx][:2]
    half = float(np.linalg.norm(b - a)) / 2 or 1.0
    u = (b - a) / (2 * half)
    n = np.array([-u[1], u[0]])  # image down when the eye line is level
    mid_y = (pts[top][:2] + pts[bottom][:2]) / 2
    centre = (a + b) / 2
    d = pts[iris][:2] - centre
    x = float(np.dot(d, u)) / half
    y = float(np.dot(pts[iris][:2] - mid_y, n)) / half
    return x, y


def gaze_offset(pts: np.ndarray) -> tuple[float, float] | None:
    """Iris position in the eyes (x: image right +, y: down +), about -1..1, or None without
    irises. 0, 0 is looking straight ahead."""
    if pts.shape[0] < 478:
        return None
    rx, ry = _eye_offset(pts, EYE_R_OUTER, EYE_R_INNER, EYE_R_TOP, EYE_R_BOTTOM, IRIS_R)
    lx, ly = _eye_offset(pts, EYE_L_INNER, EYE_L_OUTER, EYE_L_TOP, EYE_L_BOTTOM, IRIS_L)
    return round((rx + lx) / 2, 3), round((ry + ly) / 2, 3)


def mouth_metrics(pts: np.ndarray) -> tuple[float, float]:
    """(mouth open ratio, smile ratio) from the lips, scale-free."""
    eyes = float(np.linalg.norm(pts[EYE_L_OUTER][:2] - pts[EYE_R_OUTER][:2])) or 1.0
    height = float(np.linalg.norm(pts[CHIN][:2] - pts[FOREHEAD][:2])) or 1.0
    gap = float(np.linalg.norm(pts[LIP_BOTTOM][:2] - pts[LIP_TOP][:2]))
    width = float(np.linalg.norm(pts[MOUTH_L][:2] - pts[MOUTH_R][:2]))
    return gap / height, width / eyes


class FaceAnalyzer:
    """One frame in, one FaceObservation out. Not thread-safe: one analyzer per thread.

    `static=True` runs detection on every frame (photos, tests); the default tracks across
    video frames, which is faster and steadier."""

    def __init__(self, *, static: bool = False, max_faces: int = 3) -> None:
        import mediapipe as mp  # heavy import: only when a face analyzer is actually made

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )
        self.engine = f"mediapipe {mp.__version__} face_mesh (refine_landmarks)"

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyze(self, frame_bgr: np.ndarray) -> FaceObservation:
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError("FaceAnalyzer.analyze: expected an HxWx3 BGR uint8 image")
        h, w = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        result = self._mesh.process(rgb)
        faces = result.multi_face_landmarks or []
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        if not faces:
            return FaceObservation(
                faces=0,
                brightness=float(grey.mean()),
                quality=["no_face"] + _exposure(float(grey.mean())),
            )
        all_pts = [
            np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], dtype=np.float32)
            for f in faces
        ]
        # The main face is the largest (nearest) one.
        widths = [float(p[:, 0].max() - p[:, 0].min()) for p in all_pts]
        pts = all_pts[int(np.argmax(widths))]
        x0, y0 = pts[:, 0].min(), pts[:, 1].min()
        x1, y1 = pts[:, 0].max(), pts[:, 1].max()
        box = (float(x0 / w), float(y0 / h), float((x1 - x0) / w), float((y1 - y0) / h))
        yaw, pitch, roll = head_pose(pts)
        facing = abs(yaw) <= YAW_LIMIT_DEG and abs(pitch) <= PITCH_LIMIT_DEG
        gaze = gaze_offset(pts)
        looking = facing and (
            gaze is None or (abs(gaze[0]) <= GAZE_LIMIT and abs(gaze[1]) <= GAZE_LIMIT * 1.5)
        )
        mouth_open, smile = mouth_metrics(pts)
        # Quality on the face area (what matters is whether the face can be read).
        xi0, yi0 = max(int(x0), 0), max(int(y0), 0)
        xi1, yi1 = min(int(x1) + 1, w), min(int(y1) + 1, h)
        face_grey = grey[yi0:yi1, xi0:xi1]
        brightness = float(face_grey.mean()) if face_grey.size else float(grey.mean())
        sharpness = None
        quality: list[str] = []
        if len(faces) > 1:
            quality.append("multiple_faces")
        quality += _exposure(brightness)
        if face_grey.size:
            small = cv2.resize(face_grey, (128, 128), interpolation=cv2.INTER_AREA)
            sharpness = float(cv2.Laplacian(small, cv2.CV_32F).var())
            # A dark face has little contrast anyway; only call blur where light is fine.
            if sharpness < BLUR_LEVEL and "too_dark" not in quality:
                quality.append("blurred")
        if box[2] < SMALL_FACE:
            quality.append("face_too_small")
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        if math.hypot(cx - 0.5, cy - 0.5) > OFF_CENTRE:
            quality.append("off_centre")
        return FaceObservation(
            faces=len(faces),
            box=tuple(round(v, 4) for v in box),
            yaw=round(yaw, 1),
            pitch=round(pitch, 1),
            roll=round(roll, 1),
            facing=facing,
            gaze=gaze,
            looking=looking,
            mouth_open=round(mouth_open, 3),
            smile=round(smile, 3),
            smiling=smile >= SMILE_WIDTH_RATIO,
            brightness=round(brightness, 1),
            sharpness=None if sharpness is None else round(sharpness, 1),
            quality=quality,
            landmarks=pts,
        )


def _exposure(level: float) -> list[str]:
    if level < DARK_LEVEL:
        return ["too_dark"]
    if level > BRIGHT_LEVEL:
        return ["too_bright"]
    return []


# Attention-timeline states, in the order they win when a bin mixes frames.
TIMELINE_STATES = ("absent", "multiple", "away", "facing")


class AttentionAggregator:
    """Per-answer summary of FaceObservations. Works on timestamps, so analysing only every
    n-th frame gives the same durations."""

    def __init__(self, *, look_away_min_s: float = 1.0, bin_s: float = 0.5) -> None:
        self.look_away_min_s = look_away_min_s
        self.bin_s = bin_s
        self._rows: list[tuple[float, int, bool | None, bool, bool, tuple[str, ...]]] = []

    def add(self, obs: FaceObservation, ts: float) -> None:
        self._rows.append(
            (
                float(ts),
                obs.faces,
                obs.facing,
                bool(obs.smiling),
                bool(obs.looking),
                tuple(obs.quality),
            )
        )

    def __len__(self) -> int:
        return len(self._rows)

    def summary(self) -> dict[str, Any]:
        rows = sorted(self._rows, key=lambda r: r[0])
        base = {
            "thresholds": {
                "yaw_deg": YAW_LIMIT_DEG,
                "pitch_deg": PITCH_LIMIT_DEG,
                "gaze": GAZE_LIMIT,
                "smile_width_ratio": SMILE_WIDTH_RATIO,
                "look_away_min_s": self.look_away_min_s,
            }
        }
        if not rows:
            return base | {
                "frames": 0,
                "duration_s": 0.0,
                "face_present_ratio": None,
                "facing_ratio": None,
                "looking_ratio": None,
                "smile_ratio": None,
                "look_away_events": [],
                "look_away_count": 0,
                "multi_face_frames": 0,
                "multi_face_ratio": 0.0,
                "longest_absence_s": 0.0,
                "quality": {},
                "timeline": [],
            }
        t0 = rows[0][0]
        # Each observation stands for the time until the next one (the last for the median gap).
        gaps = [b[0] - a[0] for a, b in zip(rows, rows[1:], strict=False)]
        step = float(np.median(gaps)) if gaps else 1 / 30
        durs = [*gaps, step]
        total = sum(durs) or 1e-9
        present = sum(d for r, d in zip(rows, durs, strict=True) if r[1] > 0)
        facing = sum(d for r, d in zip(rows, durs, strict=True) if r[1] > 0 and r[2])
        looking = sum(d for r, d in zip(rows, durs, strict=True) if r[1] > 0 and r[4])
        smiling = sum(d for r, d in zip(rows, durs, strict=True) if r[1] > 0 and r[3])
        multi = [r for r in rows if r[1] > 1]

        def runs(pred) -> list[tuple[float, float]]:
            out, start = [], None
            for r, d in zip(rows, durs, strict=True):
                if pred(r):
                    if start is None:
                        start = r[0]
                    end = r[0] + d
                elif start is not None:
                    out.append((start, end))
                    start = None
            if start is not None:
                out.append((start, end))
            return out

        # Looking away: a face is there but turned (absence is counted separately).
        away_runs = [
            (a - t0, b - t0)
            for a, b in runs(lambda r: r[1] > 0 and r[2] is False)
            if b - a >= self.look_away_min_s
        ]
        absent_runs = runs(lambda r: r[1] == 0)
        quality: dict[str, float] = {}
        for r, d in zip(rows, durs, strict=True):
            for q in r[5]:
                quality[q] = quality.get(q, 0.0) + d
        timeline = []
        nbins = max(1, math.ceil((rows[-1][0] + durs[-1] - t0) / self.bin_s - 1e-9))
        for i in range(nbins):
            lo, hi = t0 + i * self.bin_s, t0 + (i + 1) * self.bin_s
            inbin = [r for r in rows if lo <= r[0] < hi]
            if not inbin:
                continue
            counts = {s: 0 for s in TIMELINE_STATES}
            for r in inbin:
                counts[_state(r)] += 1
            # The majority state of the bin; ties go to the more serious one.
            best = max(TIMELINE_STATES, key=lambda s: (counts[s], -TIMELINE_STATES.index(s)))
            timeline.append([round(i * self.bin_s, 2), best])
        return base | {
            "frames": len(rows),
            "duration_s": round(total, 2),
            "face_present_ratio": round(present / total, 3),
            "facing_ratio": round(facing / present, 3) if present else 0.0,
            "looking_ratio": round(looking / present, 3) if present else 0.0,
            "smile_ratio": round(smiling / present, 3) if present else 0.0,
            "look_away_events": [[round(a, 2), round(b, 2)] for a, b in away_runs],
            "look_away_count": len(away_runs),
            "multi_face_frames": len(multi),
            "multi_face_ratio": round(
                sum(d for r, d in zip(rows, durs, strict=True) if r[1] > 1) / total, 3
            ),
            "longest_absence_s": round(max((b - a for a, b in absent_runs), default=0.0), 2),
            "quality": {q: round(v / total, 3) for q, v in sorted(quality.items())},
            "timeline": timeline,
        }


def _state(r: tuple) -> str:
    if r[1] == 0:
        return "absent"
    if r[1] > 1:
        return "multiple"
    return "facing" if r[2] else "away"
