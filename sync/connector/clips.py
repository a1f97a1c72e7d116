"""HR's side of answer clips: the X25519 clip key (`interview-hr clip-key`), and listing and
decrypting the clips devices uploaded (`interview-hr clip list|export`). It never writes a
decrypted clip anywhere but the file HR names, and never prints a key.
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

from cryptography.exceptions import InvalidTag

from device.mediacrypt import (
    MediaError,
    generate_clip_key,
    hr_key_id,
    key_id,
    load_clip_private_key,
    open_bytes,
)


def stored_clip_bytes(settings, clip_id: str) -> tuple[dict, bytes]:
    """(clip row, the device's sealed recording as uploaded). Raises LookupError if unknown or
    not completely received, MediaError if the connector's at-rest file was altered."""
    from sync.connector.endpoint import ClipFile, clip_key
    from sync.connector.service import open_db

    db, key = open_db(settings)
    try:
        clip = db.clip(clip_id)
    finally:
        db.close()
    if clip is None:
        raise LookupError(f"no clip {clip_id}")
    if not clip["completed"]:
        raise LookupError(f"clip {clip_id} is not completely uploaded yet "
                          f"({clip['received_bytes']}/{clip['length']} bytes)")
    try:
        data = ClipFile(Path(clip["path"]), clip_key(key), clip["id"]).read()
    except InvalidTag:
        raise MediaError(f"clip {clip_id}: the stored file does not authenticate (altered on disk)") from None
    return clip, data


def decrypt_clip(data: bytes, hr_key, where: str = "clip") -> tuple[dict, list[tuple[float, bytes]]]:
    """The recording's header and all its (seconds, chunk) pairs; MediaError if the HR key does
    not open it or anything was altered (nothing partial is returned)."""
    header, chunks = open_bytes(data, hr_key=hr_key, where=where)
    return header, list(chunks)


def write_export(header: dict, chunks: list[tuple[float, bytes]], out: Path) -> str:
    """Write a decrypted clip as HR can play it. Audio → WAV (PCM exactly as recorded); video →
    `.mjpeg`/`.mjpg` (the recorded JPEG frames back to back, byte for byte, plays in VLC/ffplay)
    or `.mp4`/`.avi` (re-encoded with OpenCV at the recorded frame rate). Returns the format."""
    out = Path(out)
    if header.get("kind") == "audio":
        with wave.open(str(out), "wb") as w:
            w.setnchannels(int(header.get("channels", 1)))
            w.setsampwidth(2)
            w.setframerate(int(header.get("samplerate", 16000)))
            w.writeframes(b"".join(c for _, c in chunks))
        return "wav"
    frames = [c for _, c in chunks if c]
    if out.suffix.lower() in (".mjpeg", ".mjpg"):
        out.write_bytes(b"".join(frames))
        return "mjpeg"
    try:
        # Only this re-encode needs OpenCV; the connector's slim install (docs/connector.md)
        # leaves it out, and HR still gets every clip as .wav or .mjpeg.
        import cv2
        import numpy as np
    except ImportError:
        raise MediaError(f"{out}: exporting {out.suffix} re-encodes the video with OpenCV, which "
                         "this installation does not have; export to .mjpeg instead (plays in "
                         "VLC), or add OpenCV: pip install opencv-python-headless") from None
    if not frames:
        raise MediaError("the video clip holds no frames")
    first = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
    h, w = first.shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out.suffix.lower() == ".mp4" else "MJPG"))
    vw = cv2.VideoWriter(str(out), fourcc, float(header.get("fps", 15)), (w, h))
    if not vw.isOpened():
        raise MediaError(f"{out}: OpenCV cannot write this format; use .mjpeg")
    for f in frames:
        vw.write(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR))
    vw.release()
    return out.suffix.lower().lstrip(".")


def _hr_key(settings, override: Path | None):
    path = override or settings.signing.clip_key_file
    if path is None:
        raise SystemExit("interview-hr clip: no HR clip key: set [signing] clip_key_file or pass --clip-key")
    try:
        return load_clip_private_key(path)
    except (OSError, ValueError) as e:
        raise SystemExit(f"interview-hr clip: {path}: {e}") from None


def cmd_clip_key(args) -> int:
    out = Path(args.out)
    pub = out.with_suffix(".pub")
    if out.exists():
        print(f"interview-hr clip-key: {out} exists; not overwritten (clips sealed for it would "
              "become unreadable)", file=sys.stderr)
        return 2
    generate_clip_key(out, pub)
    print(f"wrote {out} (0600) and {pub}; set [signing] clip_key_file = \"{out}\" and enrol devices "
          "(the bundle carries the public key). Keep a backup of the private key: without it no "
          "clip can be played.")
    return 0


def cmd_clip_list(args) -> int:
    from sync.connector.__main__ import _settings
    from sync.connector.service import open_db

    settings = _settings(args)
    db, _ = open_db(settings)
    try:
        clips = db.clips()
    finally:
        db.close()
    rows = []
    for c in clips:
        meta = c.get("meta") or {}
        if isinstance(meta, str):
            meta = json.loads(meta or "{}")
        rows.append({"id": c["id"], "device_id": c["device_id"], "session_id": meta.get("session_id"),
                     "answer_id": meta.get("answer_id"), "question_id": meta.get("question_id"),
                     "kind": meta.get("kind"), "bytes": c["length"],
                     "complete": bool(c["completed"])})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    if not rows:
        print("no clips")
    for r in rows:
        print(f"{r['id']}  {r['device_id']:<16} {r['kind'] or '?':<5} {r['bytes']:>10} B  "
              f"{'complete' if r['complete'] else 'partial '}  session {r['session_id'] or '-'}  "
              f"question {r['question_id'] or '-'}")
    return 0


def cmd_clip_export(args) -> int:
    from sync.connector.__main__ import _settings

    settings = _settings(args)
    hr_key = _hr_key(settings, args.clip_key)
    try:
        _, data = stored_clip_bytes(settings, args.id)
        kid = hr_key_id(data)
        if kid is not None and kid != key_id(hr_key.public_key()):
            raise MediaError(f"clip {args.id} is sealed for HR clip key {kid}, not "
                             f"{key_id(hr_key.public_key())} (an older key?)")
        header, chunks = decrypt_clip(data, hr_key, where=f"clip {args.id}")
        fmt = write_export(header, chunks, args.out)
    except (LookupError, MediaError) as e:
        print(f"interview-hr clip export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({header.get('kind')}, {fmt}, {len(chunks)} chunks)")
    return 0


def cmd_clip_publish_key(args) -> int:
    """Send HR's clip public key to devices as a signed command (devices enrolled before the
    clip key existed); enrolment bundles made later carry it anyway."""
    import time

    from device.mediacrypt import clip_public_pem
    from sync.connector.__main__ import _publish, _settings

    settings = _settings(args)
    pem = clip_public_pem(_hr_key(settings, args.clip_key).public_key())
    return _publish(args, "command", int(time.time() * 1000), {"type": "clip_key", "pem": pem})


def add_clip_parsers(sub) -> None:
    s = sub.add_parser("clip-key", help="create HR's X25519 key that answer clips are sealed for")
    s.add_argument("out", type=Path, help="private key file (the .pub is written beside it)")
    s.set_defaults(func=cmd_clip_key)
    s = sub.add_parser("clip", help="list answer clips, or decrypt one for playback")
    csub = s.add_subparsers(dest="clip_cmd", required=True, metavar="ACTION")
    c = csub.add_parser("list", help="clips received from devices")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_clip_list)
    c = csub.add_parser("export", help="decrypt a clip with the HR clip key: audio → .wav, "
                        "video → .mjpeg (frames as recorded) or .mp4/.avi (re-encoded)")
    c.add_argument("id", help="clip id (= the answer's clip_ids in the result record)")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--clip-key", type=Path, help="HR clip private key (default [signing] clip_key_file)")
    c.set_defaults(func=cmd_clip_export)
    c = csub.add_parser("publish-key", help="send HR's clip public key to devices (signed command)")
    c.add_argument("--device", action="append", help="device id (repeatable; default: all known)")
    c.add_argument("--tenant")
    c.add_argument("--key", type=Path, help="Ed25519 signing key")
    c.add_argument("--clip-key", type=Path, help="HR clip private key (default [signing] clip_key_file)")
    c.set_defaults(func=cmd_clip_publish_key)


__all__ = ["add_clip_parsers", "decrypt_clip", "stored_clip_bytes", "write_export"]
