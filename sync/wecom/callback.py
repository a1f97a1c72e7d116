"""The WeCom redirect-URI server the sync daemon runs on the intranet (HTTPS), and the checks
behind it: state nonce, code exchange, roster match, verifications row, audit, phone page.

Also the device's half of relay mode (code+state forwarded over the signed downlink). It
must never log or echo an OAuth code, a token or a candidate's name.
"""

from __future__ import annotations

import html
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from device import signin
from device.roster import RosterEntry
from device.signin import SignInRefusal
from sync.wecom.client import WecomClient, WecomError, WecomUnreachable
from sync.wecom.notifier import note_health

log = logging.getLogger(__name__)

ACTOR = "sync.wecom"
MAX_PARAM_LEN = 512  # WeCom codes are ~40-60 chars and states <=128; anything longer is junk


@dataclass(frozen=True)
class Outcome:
    result: RosterEntry | SignInRefusal
    verification_id: str | None

    @property
    def ok(self) -> bool:
        return not isinstance(self.result, SignInRefusal)

    @property
    def reason(self) -> str:
        return "ok" if self.ok else self.result.reason


class SignInProcessor:
    """state -> code -> identity -> roster -> verifications row + audit. Thread-safe."""

    def __init__(
        self,
        store: Any,
        settings: Any,
        client: WecomClient,
        audit: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        self.audit = audit
        self.clock = clock
        # One callback at a time: the store connection is shared and a phone never needs
        # more than a few hundred milliseconds.
        self._lock = threading.Lock()

    def process(self, code: str, state: str, *, method: str = "wecom") -> Outcome:
        with self._lock:
            return self._process(code, state, method)

    def _process(self, code: str, state: str, method: str) -> Outcome:
        device_id = self.settings.device.id
        now = self.clock()
        refusal = signin.consume_state(self.store, state, device_id, now)
        if refusal is not None:
            # A state made for another terminal: tell the phone, don't disturb this screen.
            on_screen = not (refusal.reason == "wrong_device" and signin.device_of_state(state) not in (None, device_id))
            return self._finish(method, refusal, on_screen=on_screen, identity_ref=None)
        try:
            ident = self.client.get_identity(code)
        except WecomUnreachable as e:
            log.warning("WeCom unreachable during sign-in: %s", e)
            note_health(self.store, False, now, str(e))
            return self._finish(method, SignInRefusal.of("wecom_unreachable"), identity_ref=None)
        except WecomError as e:
            if e.errcode == 40029:
                # The code expired or was used: the phone took too long, scan again.
                return self._finish(method, SignInRefusal.of("expired_state"), identity_ref=None)
            log.error("WeCom refused the code exchange (errcode %s); check corp id, secret and agent id", e.errcode)
            return self._finish(method, SignInRefusal.of("wecom_unreachable"), identity_ref=None)
        note_health(self.store, True, now)
        result = signin.match_identity(
            self.store,
            self.settings,
            self.clock(),
            userid=ident.userid,
            external_userid=ident.external_userid,
            openid=ident.openid,
        )
        return self._finish(method, result, identity_ref=ident.ref())

    def _finish(
        self,
        method: str,
        result: RosterEntry | SignInRefusal,
        *,
        identity_ref: str | None,
        on_screen: bool = True,
    ) -> Outcome:
        device_id = self.settings.device.id
        vid = None
        with self.store.transaction():
            if on_screen:
                vid = signin.record_verification(self.store, device_id, method, result, self.clock())
            signin.audit_outcome(
                self.audit, ACTOR, method, result, device_id=device_id, verification_id=vid, identity_ref=identity_ref
            )
        out = Outcome(result, vid)
        log.info("sign-in via %s: %s", method, out.reason)
        return out


# ---- the phone's page -----------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_zh} · {title_en}</title>
<style>
body{{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;padding:2.5em 1.5em;
background:#f5f7fa;color:#1f2d3d;text-align:center}}
.icon{{font-size:3.5em;line-height:1}} h1{{font-size:1.4em;margin:.6em 0 .3em}}
p{{font-size:1.1em;line-height:1.6;margin:.4em 0}} .en{{color:#5a6b7d;font-size:.95em}}
</style></head><body>
<div class="icon">{icon}</div>
<h1>{title_zh}</h1><p>{message_zh}</p>
<h1 class="en">{title_en}</h1><p class="en">{message_en}</p>
</body></html>"""


def phone_page(reason: str) -> str:
    """A short bilingual page for the candidate's phone, per outcome (no personal data)."""
    if reason == "ok":
        zh, en = signin.MESSAGES["ok"]
        title = ("签到成功", "Signed in")
        icon = "&#x2705;"
    elif reason == "relayed":
        zh, en = ("已收到，请看终端屏幕。", "Received. Please look at the terminal screen.")
        title = ("请看屏幕", "Look at the screen")
        icon = "&#x1F4F2;"
    elif reason in signin.MESSAGES:
        zh, en = signin.MESSAGES[reason]
        title = ("无法签到", "Could not sign in")
        icon = "&#x26A0;&#xFE0F;"
    else:
        zh, en = ("请求无效，请重新扫描屏幕上的二维码。", "Invalid request. Please scan the QR code on the screen again.")
        title = ("无法签到", "Could not sign in")
        icon = "&#x26A0;&#xFE0F;"
    return _PAGE.format(
        title_zh=html.escape(title[0]),
        title_en=html.escape(title[1]),
        message_zh=html.escape(zh),
        message_en=html.escape(en),
        icon=icon,
    )


# ---- HTTP(S) server -----------------------------------------------------------------------


def parse_callback(path_and_query: str, expected_path: str) -> tuple[str, str] | str:
    """(code, state) from a redirect, or the name of what is wrong with it."""
    u = urlparse(path_and_query)
    if u.path.rstrip("/") != expected_path.rstrip("/"):
        return "path"
    q = parse_qs(u.query)
    code = (q.get("code") or [""])[0]
    state = (q.get("state") or [""])[0]
    if not code:
        return "code"
    if not state:
        return "state"
    if len(code) > MAX_PARAM_LEN or len(state) > MAX_PARAM_LEN:
        return "length"
    return code, state


class CallbackServer:
    """Serves ``redirect_uri``'s path; ``on_callback(code, state) -> reason`` does the work."""

    def __init__(
        self,
        on_callback: Callable[[str, str], str],
        *,
        path: str,
        host: str = "0.0.0.0",
        port: int = 8443,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        name: str = "wecom-callback",
    ) -> None:
        self.on_callback = on_callback
        self.name = name
        self.path = path or "/"
        self.host = host
        self.port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    def start(self) -> CallbackServer:
        srv = self

        class Handler(_CallbackHandler):
            server_obj = srv

        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
        if self.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=self.name, daemon=True
        )
        self._thread.start()
        log.info("WeCom sign-in callback listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread


class _CallbackHandler(BaseHTTPRequestHandler):
    server_obj: CallbackServer
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parsed = parse_callback(self.path, self.server_obj.path)
        if isinstance(parsed, str):
            if parsed == "path":
                self._send(404, "<h1>404</h1>")
                return
            log.warning("sign-in callback without a usable %s parameter from %s", parsed, self.client_address[0])
            self._send(400, phone_page("bad_request"))
            return
        code, state = parsed
        try:
            reason = self.server_obj.on_callback(code, state)
        except Exception:  # a bug must cost one page, never the daemon
            log.exception("sign-in callback failed")
            self._send(500, phone_page("wecom_unreachable"))
            return
        self._send(200, phone_page(reason))

    def _send(self, status: int, body_html: str) -> None:
        body = body_html.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the URL holds the code
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # The default access log would write the code and state: keep them out.
        log.debug("callback %s from %s", self.command, self.client_address[0])


def callback_path(redirect_uri: str) -> str:
    return urlparse(redirect_uri).path or "/"


def server_for_device(processor: SignInProcessor, wecom: Any, **kw: Any) -> CallbackServer:
    """The daemon's callback server, configured from ``settings.wecom``."""
    return CallbackServer(
        lambda code, state: processor.process(code, state).reason,
        path=callback_path(wecom.redirect_uri),
        host=kw.pop("host", wecom.callback_host),
        port=kw.pop("port", wecom.callback_port),
        certfile=getattr(wecom, "callback_cert_file", None),
        keyfile=getattr(wecom, "callback_key_file", None),
        **kw,
    )


# ---- relay mode -----------------------------------------------------------------------------

RELAY_COMMAND = "wecom_signin"


def relay_command(code: str, state: str) -> dict[str, str] | None:
    """The ``down/command`` body the HR connector publishes for a relayed callback.

    Returns None when the state names no device (not one of ours): nothing to forward.
    """
    device_id = signin.device_of_state(state)
    if device_id is None:
        return None
    return {"type": RELAY_COMMAND, "device_id": device_id, "code": code, "state": state}


def relay_server(
    publish: Callable[[str, dict[str, str]], None], *, redirect_uri: str, **kw: Any
) -> CallbackServer:
    """The connector's redirect-URI server: forwards code+state to the device's downlink.

    ``publish(device_id, command)`` signs and sends ``command`` on ``down/command``.
    """

    def forward(code: str, state: str) -> str:
        cmd = relay_command(code, state)
        if cmd is None:
            return "expired_state"
        publish(cmd["device_id"], cmd)
        return "relayed"

    kw.setdefault("name", "wecom-relay")
    return CallbackServer(forward, path=callback_path(redirect_uri), **kw)


def handle_relay_command(processor: SignInProcessor, command: dict[str, Any]) -> Outcome | None:
    """The device's side: run the same checks on a verified ``down/command`` body."""
    if command.get("type") != RELAY_COMMAND:
        return None
    code, state = command.get("code"), command.get("state")
    if not isinstance(code, str) or not isinstance(state, str) or not code or not state:
        log.warning("relayed sign-in command without code/state; ignored")
        return None
    if len(code) > MAX_PARAM_LEN or len(state) > MAX_PARAM_LEN:
        log.warning("relayed sign-in command with oversized fields; ignored")
        return None
    return processor.process(code, state, method="relay")
