"""The WeCom API client: wechatpy's enterprise client pointed at a configurable base URL.

Caches the access token and refreshes it before expiry and on 40014/42001, backs off on
rate-limit answers, and turns transport failures into ``WecomUnreachable``. It must never
log the corp secret, access tokens or OAuth codes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException

log = logging.getLogger(__name__)
# urllib3 logs every request line at DEBUG, and WeCom puts the access token and the OAuth
# code in the query string: keep those lines out of the log even when run with -v.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com/cgi-bin/"
TOKEN_ERRORS = (40001, 40014, 42001)  # invalid credential / invalid token / expired token
RATE_LIMIT_ERRORS = (45009, 45011, 45033)  # freq limit / minute quota / concurrency


class WecomError(Exception):
    """WeCom answered with an error code (``errcode``, ``errmsg``)."""

    def __init__(self, errcode: int | None, errmsg: str) -> None:
        super().__init__(f"WeCom error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WecomUnreachable(WecomError):
    """WeCom could not be reached (network, DNS, TLS, HTTP 5xx)."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, f"unreachable: {detail}")


class WecomRateLimited(WecomError):
    """WeCom kept answering with a rate-limit code after our backoff."""


@dataclass(frozen=True)
class WecomIdentity:
    """Who scanned: a member (userid) or an outsider (openid, maybe external_userid)."""

    userid: str | None = None
    openid: str | None = None
    external_userid: str | None = None

    @property
    def kind(self) -> str:
        return "member" if self.userid else ("external" if self.external_userid else "openid")

    def ref(self) -> str:
        """An id safe to audit (no name)."""
        if self.userid:
            return f"userid:{self.userid}"
        if self.external_userid:
            return f"external_userid:{self.external_userid}"
        return f"openid:{self.openid}"


class WecomClient(WeChatClient):
    """``wechatpy.enterprise.WeChatClient`` with a configurable base URL and our policies."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        agent_id: int,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 5.0,
        refresh_margin_s: float = 300.0,
        rate_limit_retries: int = 2,
        backoff_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        if not base_url.endswith("/"):
            base_url += "/"
        # Instance attribute: wechatpy's _request reads self.API_BASE_URL.
        self.API_BASE_URL = base_url
        self.agent_id = int(agent_id)
        self.refresh_margin_s = refresh_margin_s
        self.rate_limit_retries = rate_limit_retries
        self.backoff_s = backoff_s
        self.clock = clock
        self.sleep = sleep
        self._token_lock = threading.Lock()
        self.token_fetches = 0  # how many times gettoken was called (status / tests)

    def __repr__(self) -> str:  # never show the secret
        return f"WecomClient(corp_id={self.corp_id!r}, agent_id={self.agent_id}, base={self.API_BASE_URL!r})"

    # ---- token -----------------------------------------------------------------------
    def fetch_access_token(self) -> dict[str, Any]:
        with self._token_lock:
            self.token_fetches += 1
            try:
                result = self._fetch_access_token(
                    url=self.API_BASE_URL + "gettoken",
                    params={"corpid": self.corp_id, "corpsecret": self.secret},
                )
            except requests.RequestException as e:
                raise WecomUnreachable(type(e).__name__) from None
            except WeChatClientException as e:
                raise _translate(e) from None
            # wechatpy stamps expires_at with time.time(); use our clock so tests can age it.
            self.expires_at = self.clock() + int(result.get("expires_in", 7200))
            return result

    @property
    def access_token(self) -> str:
        token = self.session.get(self.access_token_key)
        if token and self.expires_at and self.expires_at - self.clock() > self.refresh_margin_s:
            return token
        self.fetch_access_token()
        return self.session.get(self.access_token_key)

    def _drop_token(self) -> None:
        self.session.delete(self.access_token_key)
        self.expires_at = None

    # ---- every call goes through here -------------------------------------------------
    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        attempt_token = 0
        attempt_rate = 0
        while True:
            call_kwargs = dict(kwargs)
            if isinstance(call_kwargs.get("params"), dict):
                params = dict(call_kwargs["params"])
                params.pop("access_token", None)  # always the current token
                call_kwargs["params"] = params
            try:
                return super()._request(method, url_or_endpoint, **call_kwargs)
            except requests.RequestException as e:
                raise WecomUnreachable(type(e).__name__) from None
            except WeChatClientException as e:
                err = _translate(e)
                if err.errcode in TOKEN_ERRORS and attempt_token < 1:
                    # The token was revoked or expired early (e.g. secret reset): refetch once.
                    log.info("WeCom token rejected (%s); fetching a new one", err.errcode)
                    attempt_token += 1
                    self._drop_token()
                    continue
                if err.errcode in RATE_LIMIT_ERRORS:
                    if attempt_rate < self.rate_limit_retries:
                        delay = self.backoff_s * (2**attempt_rate)
                        log.warning("WeCom rate limit (%s); retrying in %.1f s", err.errcode, delay)
                        attempt_rate += 1
                        self.sleep(delay)
                        continue
                    raise WecomRateLimited(err.errcode, err.errmsg) from None
                raise err from None

    # ---- the calls we use --------------------------------------------------------------
    def get_identity(self, code: str) -> WecomIdentity:
        """Exchange an OAuth / QR-login code for the person (auth/getuserinfo)."""
        r = self.get("auth/getuserinfo", params={"code": code})
        userid = r.get("userid") or r.get("UserId") or None
        openid = r.get("openid") or r.get("OpenId") or None
        ext = r.get("external_userid") or None
        if not (userid or openid or ext):
            raise WecomError(r.get("errcode"), "getuserinfo returned no identity")
        return WecomIdentity(userid=userid, openid=openid, external_userid=ext)

    def get_user(self, userid: str) -> dict[str, Any]:
        return self.user.get(userid)

    def send(self, to: Sequence[str], msg: dict[str, Any], *, dedup_s: int | None = None) -> dict[str, Any]:
        """Send an app message; ``dedup_s`` asks WeCom to drop an identical one within that time."""
        body = dict(msg)
        if dedup_s:
            body["enable_duplicate_check"] = 1
            body["duplicate_check_interval"] = int(dedup_s)
        return self.message.send(self.agent_id, list(to), msg=body)

    def send_textcard(self, to: Sequence[str], title: str, description: str, url: str, btntxt: str = "详情", **kw: Any) -> dict[str, Any]:
        card = {"title": title, "description": description, "url": url, "btntxt": btntxt}
        return self.send(to, {"msgtype": "textcard", "textcard": card}, **kw)

    def send_markdown(self, to: Sequence[str], content: str, **kw: Any) -> dict[str, Any]:
        return self.send(to, {"msgtype": "markdown", "markdown": {"content": content}}, **kw)

    def send_text(self, to: Sequence[str], content: str, **kw: Any) -> dict[str, Any]:
        return self.send(to, {"msgtype": "text", "text": {"content": content}}, **kw)


def _translate(e: WeChatClientException) -> WecomError:
    if e.errcode is None:
        status = getattr(getattr(e, "response", None), "status_code", None)
        return WecomUnreachable(f"HTTP {status}")
    return WecomError(int(e.errcode), str(e.errmsg))


def client_from_settings(wecom: Any, secret: str, **kw: Any) -> WecomClient:
    """Build the client from ``settings.wecom`` and the secret opened from the SecretBox."""
    return WecomClient(
        wecom.corp_id,
        secret,
        wecom.agent_id,
        base_url=getattr(wecom, "api_base_url", None) or DEFAULT_BASE_URL,
        **kw,
    )
