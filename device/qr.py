"""Reading QR codes from camera frames: the one reader the terminal uses.

zxing-cpp, not ``cv2.QRCodeDetector``: on a camera-like frame (slight perspective, blur and
sensor noise) of an enrolment bundle's code (version 33, 145 modules) OpenCV's detector read
0 of 8 at 4.8 px per module and OpenCV's Aruco detector 5 of 8, while zxing-cpp read 8 of 8 at
3.9 and 4.8 px per module, in 6 ms a frame instead of about 70 ms
(``python -m benchmarks qr`` measures this). Both the kiosk's invitation scan and
``kiosk-provision enrol --scan`` read through here, and the HR side checks the codes it draws
with the same reader.

This module imports no Qt and no camera code: a frame is a numpy BGR or greyscale array.
"""

from __future__ import annotations

from typing import Any

__all__ = ["read_qr", "read_qr_texts"]


def read_qr_texts(image: Any) -> list[str]:
    """The texts of every QR code readable in ``image`` (numpy BGR or greyscale, or a PIL image),
    in reading order.

    An empty list when there is none, when the image is empty, or when the reader fails on it
    (a broken frame is not an error the caller can act on; the next frame is).
    """
    import zxingcpp

    if image is None or getattr(image, "size", 0) == 0:
        return []
    try:
        found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    except (ValueError, TypeError, RuntimeError):
        return []
    return [b.text for b in found if b.valid and b.text]


def read_qr(image: Any, prefix: str = "") -> str | None:
    """The first readable QR text in ``image`` that starts with ``prefix``; None if none does."""
    for text in read_qr_texts(image):
        if text.startswith(prefix):
            return text
    return None
