"""A candidate's phone, simulated, for demos and site checks against the fake WeCom server:
"scan" the terminal's QR-login URL as a given person and open the redirect to the callback.

Only for the fake server (the real WeCom login needs the WeCom app). Prints the page's
outcome line, never the code.
"""

from __future__ import annotations

import argparse
import re
from urllib.parse import urlparse

import httpx


def scan_and_open(qr_url: str, fake_root: str, who: str, *, verify: str | bool = True, timeout: float = 10.0) -> tuple[int, str]:
    """Scan ``qr_url`` at the fake WeCom as ``who`` (user id, or ``openid:<id>``); open the
    redirect URI like the phone's browser. Returns (HTTP status, page text)."""
    u = urlparse(qr_url)
    with httpx.Client(verify=verify, timeout=timeout) as phone:
        r = phone.get(fake_root.rstrip("/") + u.path, params={**dict(httpx.QueryParams(u.query)), "as": who})
        if r.status_code != 302:
            return r.status_code, r.text
        page = phone.get(r.headers["location"])
        return page.status_code, page.text


def outcome(page_html: str) -> str:
    """The page's two headings and messages as one line (zh / en)."""
    parts = re.findall(r"<(?:h1|p)[^>]*>([^<]+)</(?:h1|p)>", page_html)
    return " / ".join(parts) if parts else page_html[:200]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sync.wecom.phone", description=__doc__)
    p.add_argument("qr_url", help="the URL in the terminal's QR code")
    p.add_argument("--fake", required=True, help="root URL of the fake WeCom server, e.g. http://127.0.0.1:8089")
    p.add_argument("--as", dest="who", required=True, help="WeCom user id, or openid:<open id>")
    p.add_argument("--cafile", help="CA/cert that signs the callback's HTTPS certificate")
    a = p.parse_args(argv)
    status, text = scan_and_open(a.qr_url, a.fake, a.who, verify=a.cafile or True)
    print(f"{status} {outcome(text)}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
