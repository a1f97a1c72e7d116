"""`python -m benchmarks qr`: how well the terminal reads an enrolment bundle's QR code.

A real bundle (site CA, a signed device certificate, WeCom settings) drawn as
`interview-hr enrol-device --qr` draws it, shown to a 720p or 1080p camera at several sizes
(pixels per QR module), tilted, blurred and noisy as `tests/provisioning/test_enrol.py`'s
uses it (hardware.synthetic.held_up_code). For each reader it prints the share of frames decoded and the median
decode time, one JSON line per figure:

- ``zxing``: device.qr, the reader the kiosk and `kiosk-provision enrol --scan` use;
- ``opencv``: cv2.QRCodeDetector, the reader before session 2, for comparison;
- ``opencv_aruco``: cv2.QRCodeDetectorAruco.

Also ``empty_frame_ms``: a 720p frame with no code in it, what the idle screen's invitation
scan costs twice a second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"read_rate_zxing": (">=", 1.0), "decode_ms_zxing": ("<=", 50.0)}


def _emit(metric: str, value: float, unit: str, **extra) -> None:
    line = {"bench": "qr", "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    if metric in TARGETS:
        op, t = TARGETS[metric]
        line["target"] = f"{op} {t:g}"
        line["ok"] = value >= t if op == ">=" else value <= t
    print(json.dumps(line, ensure_ascii=False), flush=True)


def run(n_bundles: int) -> None:
    import cv2
    import numpy as np

    from device.qr import read_qr_texts
    from hardware.synthetic import held_up_code
    from sync import pki
    from sync.enrolment import bundle_qr_text, make_bundle, write_bundle
    from sync.signing import generate_signing_key, load_private_key

    cv_det, aruco_det = cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()
    readers = {
        "zxing": lambda f: read_qr_texts(f),
        "opencv": lambda f: [cv_det.detectAndDecode(f)[0]],
        "opencv_aruco": lambda f: [aruco_det.detectAndDecode(f)[0]],
    }
    views = [(720, 3.5), (720, 4.0), (720, 4.8), (1080, 3.5), (1080, 4.8), (1080, 6.0), (1080, 7.0)]
    hits: dict[tuple[str, int, float], int] = {}
    times: dict[str, list[float]] = {name: [] for name in readers}
    modules = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = pki.make_ca(d / "ca")
        generate_signing_key(d / "hr.key", d / "hr.pub")
        hr_key = load_private_key(d / "hr.key")
        for i in range(n_bundles):
            csr = pki.make_csr(d / f"dev{i}.key", f"kiosk-{i:04d}")
            bundle = make_bundle(
                ca=ca, csr_pem=csr, signing_key=hr_key, tenant="acme", device_id=f"kiosk-{i:04d}",
                mqtt_host="broker.example.internal", https_base_url="https://hr.example.internal:9443/kiosk/v1",
                company_name="示例科技", site_name="上海总部 前台",
                wecom={"corp_id": "wwfakecorp0001", "agent_id": 1000002, "secret": "s" * 43,
                       "redirect_uri": "https://kiosk.example.internal:8443/wecom/callback"})
            png = d / f"b{i}.png"
            write_bundle(bundle, d / f"b{i}.json", qr_png=png)
            modules.append(cv2.imread(str(png)).shape[0] // 10 - 8)
            want = bundle_qr_text(bundle)
            for h, ppm in views:
                frame = held_up_code(png, frame_h=h, px_per_module=ppm, seed=i)
                for name, read in readers.items():
                    t0 = time.perf_counter()
                    ok = want in read(frame)
                    times[name].append((time.perf_counter() - t0) * 1000)
                    hits[(name, h, ppm)] = hits.get((name, h, ppm), 0) + ok
    _emit("qr_modules", statistics.median(modules), "modules", version=(statistics.median(modules) - 17) / 4)
    for name in readers:
        total = sum(v for (n, _, _), v in hits.items() if n == name)
        _emit(f"read_rate_{name}", total / (n_bundles * len(views)), "share",
              by_view={f"{h}p@{ppm}px": hits[(name, h, ppm)] / n_bundles for h, ppm in views})
        _emit(f"decode_ms_{name}", statistics.median(times[name]), "ms", n=len(times[name]))
    empty = np.full((720, 1280, 3), 180, np.uint8)
    cv2.putText(empty, "no code here", (400, 360), cv2.FONT_HERSHEY_SIMPLEX, 2, (20, 20, 20), 3)
    t = []
    for _ in range(20):
        t0 = time.perf_counter()
        read_qr_texts(empty)
        t.append((time.perf_counter() - t0) * 1000)
    _emit("empty_frame_ms", statistics.median(t), "ms", n=len(t))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks qr", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundles", type=int, default=8, help="fresh bundles to draw (default 8)")
    args = ap.parse_args(argv)
    run(args.bundles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
