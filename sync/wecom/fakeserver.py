"""A local fake WeCom (企业微信) API server for tests and the demo, speaking the real protocol.

It answers gettoken, auth/getuserinfo (and the older user/getuserinfo), user/get and
message/send with WeCom's real JSON shapes and error codes, and plays the phone's part of the
web QR login (``/wwlogin/sso/login`` mints a code and redirects to the redirect URI).
It must never be used in production: it has no authentication beyond the corp secret.

Run for the demo:  ``python -m sync.wecom.fakeserver --port 8089 --users users.json``
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

log = logging.getLogger(__name__)

TOKEN_TTL_S = 7200  # WeCom's access_token lifetime
CODE_TTL_S = 300  # an OAuth code is valid five minutes and once


@dataclass
class FakeIdentity:
    """Who a code stands for: a member (userid) or an outsider (openid, external_userid)."""

    userid: str | None = None
    openid: str | None = None
    external_userid: str | None = None


@dataclass
class FakeDirectory:
    corp_id: str = "wwfakecorp0001"
    secret: str = "fake-secret-0123456789"
    agent_id: int = 1000002
    # userid -> user/get body (name, mobile, department ...)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # openid -> external_userid ("" when the person is nobody's external contact)
    outsiders: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> FakeDirectory:
        """Load ``{"corp_id", "secret", "agent_id", "users": [{"userid", "name"}], "outsiders": [{"openid", "external_userid"}]}``."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        d = cls(
            corp_id=data.get("corp_id", cls.corp_id),
            secret=data.get("secret", cls.secret),
            agent_id=int(data.get("agent_id", cls.agent_id)),
        )
        for u in data.get("users", []):
            d.users[u["userid"]] = dict(u)
        for o in data.get("outsiders", []):
            d.outsiders[o["openid"]] = o.get("external_userid", "")
        return d


class _Closed(Exception):
    pass


class FakeWecomServer:
    """The fake server. Start with ``start()``; tests steer it with the methods below."""

    def __init__(
        self,
        directory: FakeDirectory | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory or FakeDirectory()
        self.host = host
        self.port = port
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expires_at
        self._current_token: str | None = None
        self._codes: dict[str, tuple[FakeIdentity, float]] = {}
        self._used_codes: set[str] = set()
        self._rate_limited = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.messages: list[dict[str, Any]] = []  # every accepted message/send body
        self.calls: list[str] = []  # endpoint paths, in order (for token-refresh tests)
        self._dedup: dict[str, float] = {}

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The API base, as wechatpy wants it (ends in ``/cgi-bin/``)."""
        return f"http://{self.host}:{self.port}/cgi-bin/"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeWecomServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = _TrackingServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-wecom", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.drop_connections()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def go_down(self) -> None:
        """Stop listening: clients get 'connection refused', as in a real outage."""
        self.stop()

    def come_back(self) -> None:
        """Listen again on the same port, with the same tokens and directory."""
        if self._httpd is None:
            self.start()

    @property
    def up(self) -> bool:
        return self._httpd is not None

    # ---- steering ----------------------------------------------------------------------
    def issue_code(
        self,
        *,
        userid: str | None = None,
        openid: str | None = None,
        external_userid: str | None = None,
    ) -> str:
        """Mint an OAuth code for a person, as WeCom does after they scan the QR code."""
        if openid and external_userid is None:
            external_userid = self.directory.outsiders.get(openid) or None
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = (
                FakeIdentity(userid=userid, openid=openid, external_userid=external_userid),
                self.clock() + CODE_TTL_S,
            )
        return code

    def expire_tokens(self) -> None:
        """Make every issued access token expired (42001) now, as after 7200 s."""
        with self._lock:
            for t in self._tokens:
                self._tokens[t] = self.clock() - 1
            self._current_token = None

    def rate_limit(self, calls: int) -> None:
        """Answer the next ``calls`` API calls (not gettoken) with 45009."""
        with self._lock:
            self._rate_limited = calls

    def messages_to(self, userid: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if userid in str(m.get("touser", "")).split("|")]

    # ---- protocol ----------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.calls.append(path)
        if path == "/wwlogin/sso/login":
            return self._sso_login(query)
        if path == "/_fake/messages" and method == "GET":
            # Not a WeCom API: lets the demo show what HR's WeCom received (the fake only).
            with self._lock:
                return self._json({"messages": list(self.messages)})
        if not path.startswith("/cgi-bin/"):
            return 404, {}, b"not found"
        endpoint = path[len("/cgi-bin/") :]
        if endpoint == "gettoken":
            return self._json(self._gettoken(query))
        err = self._check_token(query.get("access_token"))
        if err:
            return self._json(err)
        with self._lock:
            if self._rate_limited > 0:
                self._rate_limited -= 1
                return self._json(_err(45009, "api freq out of limit"))
        try:
            data = json.loads(body.decode("utf-8")) if body else {}
        except ValueError:
            return self._json(_err(47001, "data format error"))
        if endpoint in ("auth/getuserinfo", "user/getuserinfo"):
            return self._json(self._getuserinfo(query, legacy=endpoint.startswith("user/")))
        if endpoint == "user/get":
            return self._json(self._user_get(query))
        if endpoint == "message/send" and method == "POST":
            return self._json(self._message_send(data))
        return self._json(_err(48001, "api forbidden"))

    @staticmethod
    def _json(payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(
            payload, ensure_ascii=False
        ).encode("utf-8")

    def _gettoken(self, q: dict[str, str]) -> dict[str, Any]:
        d = self.directory
        if q.get("corpid") != d.corp_id:
            return _err(40013, "invalid corpid")
        if q.get("corpsecret") != d.secret:
            return _err(40001, "invalid credential, access_token is invalid or not latest")
        now = self.clock()
        with self._lock:
            # Within its lifetime WeCom hands back the same token; a new one after expiry.
            tok = self._current_token
            if tok is None or self._tokens.get(tok, 0) <= now:
                tok = secrets.token_urlsafe(48)
                self._tokens[tok] = now + TOKEN_TTL_S
                self._current_token = tok
            remaining = int(self._tokens[tok] - now)
        return {"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": remaining}

    def _check_token(self, token: str | None) -> dict[str, Any] | None:
        if not token:
            return _err(41001, "access_token missing")
        with self._lock:
            exp = self._tokens.get(token)
        if exp is None:
            return _err(40014, "invalid access_token")
        if exp <= self.clock():
            return _err(42001, "access_token expired")
        return None

    def _getuserinfo(self, q: dict[str, str], *, legacy: bool) -> dict[str, Any]:
        code = q.get("code", "")
        now = self.clock()
        with self._lock:
            entry = self._codes.pop(code, None)
            if entry is None or code in self._used_codes or entry[1] < now:
                return _err(40029, "invalid code")
            self._used_codes.add(code)
        ident = entry[0]
        out: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if ident.userid:
            if legacy:
                out.update(UserId=ident.userid, DeviceId="")
            else:
                out.update(userid=ident.userid, user_ticket=secrets.token_urlsafe(24), expires_in=1800)
        else:
            if legacy:
                out.update(OpenId=ident.openid or "", DeviceId="")
            else:
                out.update(openid=ident.openid or "")
            if ident.external_userid:
                out["external_userid"] = ident.external_userid
        return out

    def _user_get(self, q: dict[str, str]) -> dict[str, Any]:
        user = self.directory.users.get(q.get("userid", ""))
        if user is None:
            return _err(60111, "invalid string value `userid`. userid not found")
        return {"errcode": 0, "errmsg": "ok", "status": 1, "department": [1], **user}

    def _message_send(self, data: dict[str, Any]) -> dict[str, Any]:
        if str(data.get("agentid")) != str(self.directory.agent_id):
            return _err(301002, "not allow operate another agent with this accesstoken.")
        msgtype = data.get("msgtype")
        if msgtype not in ("text", "textcard", "markdown"):
            return _err(40008, "invalid message type")
        body = data.get(msgtype) or {}
        if msgtype in ("text", "markdown") and not body.get("content"):
            return _err(44004, "empty content")
        if msgtype == "textcard":
            for key in ("title", "description", "url"):
                if not body.get(key):
                    return _err(41004 if key == "title" else 41005, f"missing {key}")
        touser = [u for u in str(data.get("touser", "")).split("|") if u]
        if not touser and not data.get("toparty") and not data.get("totag"):
            return _err(40031, "invalid user list")
        invalid = [u for u in touser if u != "@all" and u not in self.directory.users]
        if data.get("enable_duplicate_check"):
            # WeCom drops a message identical to one sent within the interval.
            key = json.dumps([data.get("touser"), msgtype, body], sort_keys=True, ensure_ascii=False)
            now = self.clock()
            interval = int(data.get("duplicate_check_interval", 1800))
            with self._lock:
                if self._dedup.get(key, -1e18) > now - interval:
                    return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": "dup"}
                self._dedup[key] = now
        with self._lock:
            self.messages.append(dict(data))
        return {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "|".join(invalid),
            "invalidparty": "",
            "invalidtag": "",
            "unlicenseduser": "",
            "msgid": secrets.token_urlsafe(16),
            "response_code": "",
        }

    def _sso_login(self, q: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The phone's side: scanning the QR with ``as=<userid>`` or ``as=openid:<openid>``."""
        d = self.directory
        if q.get("login_type") != "CorpApp" or q.get("appid") != d.corp_id:
            return 400, {}, b"invalid appid or login_type"
        if str(q.get("agentid")) != str(d.agent_id):
            return 400, {}, b"invalid agentid"
        who = q.get("as", "")
        if not who or not q.get("redirect_uri"):
            return 400, {}, b"missing as= or redirect_uri"
        if who.startswith("openid:"):
            code = self.issue_code(openid=who[len("openid:") :])
        else:
            code = self.issue_code(userid=who)
        sep = "&" if "?" in q["redirect_uri"] else "?"
        loc = q["redirect_uri"] + sep + urlencode({"code": code, "state": q.get("state", "")})
        return 302, {"Location": loc}, b""


def _err(code: int, msg: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": f"{msg}, hint: [{int(time.time())}-fake]"}


class _TrackingServer(ThreadingHTTPServer):
    """Remembers open keep-alive connections so going down really cuts them."""

    allow_reuse_address = True

    def __init__(self, *a: Any, **kw: Any) -> None:
        self._conns: set[Any] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*a, **kw)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        import socket

        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    fake: FakeWecomServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def _serve(self, method: str) -> None:
        u = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        status, headers, payload = self.fake.handle(method, u.path, query, body)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Query strings carry codes and tokens: keep them out of the log.
        log.debug("fake wecom: %s", self.command)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sync.wecom.fakeserver", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    p.add_argument("--users", type=Path, help="JSON directory file (corp_id, secret, agent_id, users, outsiders)")
    a = p.parse_args(argv)
    directory = FakeDirectory.from_file(a.users) if a.users else FakeDirectory()
    srv = FakeWecomServer(directory, host=a.host, port=a.port).start()
    print(f"fake WeCom listening on {srv.root_url} (api base {srv.base_url})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
