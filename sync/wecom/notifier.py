"""Sends the outbox's ``notify`` rows to HR as WeCom app messages (help, started, finished,
declined, hardware failure), so a WeCom outage delays them but never loses or repeats them.

Messages never carry transcripts, answers, scores per question or face data; the
candidate's name is masked unless the config says otherwise. Never log message bodies.
"""

from __future__ import annotations

import html
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from device.roster import mask_name
from sync.wecom.client import WecomClient, WecomError, WecomRateLimited, WecomUnreachable

log = logging.getLogger(__name__)

KIND = "notify"
TYPES = ("help", "started", "finished", "declined", "hardware_failed")
DEDUP_S = 4 * 3600  # WeCom drops an identical message within this; covers a lost ack
MARKDOWN_MAX_BYTES = 2048  # WeCom's limit for markdown content
BACKOFF_MIN_S = 5.0
BACKOFF_MAX_S = 600.0
BAD_PAYLOAD_RETRY_S = 3600.0  # a row we cannot render waits for a fixed build, never deleted
DEFAULT_LINK = "https://work.weixin.qq.com/"
HEALTH_KV = "wecom.health"  # {"ok": bool, "at": epoch s, "error": str}: the kiosk may read it
HEALTH_PROBE_S = 300.0  # with nothing to send, check WeCom this often
HEALTH_REWRITE_S = 60.0  # an unchanged health is rewritten at most this often

RECOMMENDATION_ZH = {
    "strong_yes": "强烈推荐",
    "yes": "推荐",
    "maybe": "待定",
    "no": "不推荐",
    "strong_no": "强烈不推荐",
    "review": "需人工复核",
}


def note_health(store: Any, ok: bool, now: float, error: str = "") -> None:
    """Record whether WeCom answered (the kiosk can offer the fallbacks before anyone scans)."""
    last = store.kv_get(HEALTH_KV) or {}
    if last.get("ok") == ok and now - float(last.get("at", 0)) < HEALTH_REWRITE_S:
        return
    if last.get("ok", True) != ok:
        log.warning("WeCom is %s", "reachable again" if ok else f"unreachable: {error}")
    store.kv_set(HEALTH_KV, {"ok": ok, "at": now, "error": error[:200]})


class BadNotification(ValueError):
    """A notify row whose payload cannot be turned into a message; names the field."""


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OSError):
        return "—"


def _require(p: dict[str, Any], key: str) -> Any:
    if key not in p or p[key] is None:
        raise BadNotification(f"notify payload: missing '{key}' for type '{p.get('type')}'")
    return p[key]


class Notifier:
    """Drains ``notify`` rows through the WeCom client. ``run_once`` is one pass (tests)."""

    def __init__(
        self,
        store: Any,
        settings: Any,
        client: WecomClient,
        *,
        clock: Callable[[], float] = time.time,
        help_collapse_s: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        self.clock = clock
        w = settings.wecom
        self.help_collapse_s = float(
            help_collapse_s if help_collapse_s is not None else getattr(w, "help_collapse_s", 60)
        )
        self.link = getattr(w, "hr_link_url", None) or DEFAULT_LINK
        self.sent = 0
        self.collapsed = 0

    # ---- rendering ---------------------------------------------------------------------
    def _name(self, p: dict[str, Any]) -> str:
        name = p.get("candidate_name")
        if not name:
            return "—"
        return mask_name(name) if self.settings.wecom.mask_names else name

    def _where(self) -> str:
        d = self.settings.device
        parts = [x for x in (d.site_name, d.site_location) if x]
        return f"{d.id}（{' · '.join(parts)}）" if parts else d.id

    def render(self, p: dict[str, Any]) -> dict[str, Any]:
        """The WeCom message body (msgtype + content) for a notify payload."""
        t = p.get("type")
        if t not in TYPES:
            raise BadNotification(f"notify payload: unknown type {t!r} (expected one of {', '.join(TYPES)})")
        when = _when(p.get("ts"))
        job = p.get("job_title") or p.get("job_id") or "—"
        if t == "help":
            doing = p.get("activity") or p.get("state") or "—"
            e = html.escape  # textcard descriptions are HTML
            desc = (
                f'<div class="gray">{when}</div>'
                f'<div class="highlight">候选人在终端请求帮助 / A candidate needs help</div>'
                f'<div class="normal">终端 Terminal：{e(self._where())}</div>'
                f'<div class="normal">候选人 Candidate：{e(self._name(p))}（{e(str(job))}）</div>'
                f'<div class="normal">正在 Doing：{e(str(doing))}</div>'
            )
            return {
                "msgtype": "textcard",
                "textcard": {"title": "面试终端求助 · Help needed", "description": desc, "url": self.link, "btntxt": "查看"},
            }
        if t == "finished":
            total = _require(p, "total")
            rec = p.get("recommendation") or "—"
            rec_text = f"{RECOMMENDATION_ZH.get(rec, rec)} ({rec})" if rec in RECOMMENDATION_ZH else str(rec)
            flags = [str(f) for f in (p.get("integrity_flags") or [])]
            flag_text = f'<font color="warning">{"、".join(flags)}</font>' if flags else "无 none"
            report = p.get("report_ref") or f"HR 系统 → 面试报告 → 会话 {str(p.get('session_id', ''))[:8]}"
            end = p.get("end_reason") or "completed"
            lines = [
                "### 面试结束 · Interview finished",
                f"> 候选人 Candidate：**{self._name(p)}**",
                f"> 职位 Job：{job}",
                f"> 终端 Terminal：{self._where()}",
                f"> 时间 Time：{when}",
                f"> 结束方式 End：{end}",
                f'> 总分 Total：<font color="info">{total}</font> / 100',
                f"> 建议 Recommendation：{rec_text}",
                f"> 诚信提示 Integrity：{flag_text}",
                f"> 完整报告 Full report：{report}",
                "",
                "评分仅供参考，录用由 HR 决定。Scores are advice; HR decides.",
            ]
            return {"msgtype": "markdown", "markdown": {"content": _fit("\n".join(lines))}}
        if t == "started":
            content = (
                f"### 面试开始 · Interview started\n> 候选人 Candidate：**{self._name(p)}**\n"
                f"> 职位 Job：{job}\n> 终端 Terminal：{self._where()}\n> 时间 Time：{when}"
            )
            return {"msgtype": "markdown", "markdown": {"content": _fit(content)}}
        if t == "declined":
            content = (
                f"### 候选人未同意录制 · Consent declined\n> 候选人 Candidate：**{self._name(p)}**\n"
                f"> 职位 Job：{job}\n> 终端 Terminal：{self._where()}\n> 时间 Time：{when}\n"
                "面试未进行，未保存任何录像。No interview took place; nothing was recorded."
            )
            return {"msgtype": "markdown", "markdown": {"content": _fit(content)}}
        component = html.escape(str(_require(p, "component")))
        detail = html.escape(str(p.get("detail") or "")[:200])
        desc = (
            f'<div class="gray">{when}</div>'
            f'<div class="highlight">终端硬件故障 / Hardware failure：{component}</div>'
            f'<div class="normal">终端 Terminal：{html.escape(self._where())}</div>'
            f'<div class="normal">{detail}</div>'
            f'<div class="normal">请联系现场技术人员 / Please call the technician</div>'
        )
        return {
            "msgtype": "textcard",
            "textcard": {"title": "面试终端故障 · Terminal fault", "description": desc, "url": self.link, "btntxt": "查看"},
        }

    # ---- delivery -----------------------------------------------------------------------
    def _recipients(self, p: dict[str, Any]) -> list[str]:
        return list(p.get("to") or self.settings.wecom.hr_oncall)

    def _collapses(self, row: Any, p: dict[str, Any]) -> bool:
        """A help press within the collapse window of the last help message sent."""
        if p.get("type") != "help":
            return False
        last = self.store.kv_get("wecom.last_help")
        if not last:
            return False
        same = last.get("session_id") == p.get("session_id")
        pressed = float(p.get("ts") or row.created)
        # abs(): an older press retried after a newer one was sent still collapses.
        return same and abs(pressed - float(last["ts"])) < self.help_collapse_s

    def run_once(self) -> int:
        """Deliver every due notify row once; returns how many rows were settled."""
        settled = 0
        # due_outbox gives one row per session; go again while rows settle so a burst of
        # help presses (or a session's queued messages after an outage) drains in one pass.
        for _ in range(100):
            progress = 0
            for row in self.store.due_outbox(self.clock(), kinds=[KIND]):
                if self._deliver(row):
                    progress += 1
            settled += progress
            if not progress:
                break
        return settled

    def _deliver(self, row: Any) -> bool:
        now = self.clock()
        p = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
        try:
            if self._collapses(row, p):
                self.store.mark_delivered(row.id, now)
                self.collapsed += 1
                log.info("help press %s collapsed into the previous help message", row.id)
                return True
            msg = self.render(p)
            to = self._recipients(p)
            if not to:
                raise BadNotification("wecom.hr_oncall is empty: nobody to notify")
        except BadNotification as e:
            log.error("notify row %s cannot be sent: %s", row.id, e)
            self.store.mark_failed(row.id, now + BAD_PAYLOAD_RETRY_S, str(e))
            return False
        try:
            result = self.client.send(to, msg, dedup_s=DEDUP_S)
        except (WecomUnreachable, WecomRateLimited) as e:
            self._retry(row, now, str(e))
            note_health(self.store, isinstance(e, WecomRateLimited), now, str(e))
            return False
        except WecomError as e:
            log.error("WeCom refused notify row %s (%s): check agent id and visible range", row.id, e.errcode)
            self._retry(row, now, str(e))
            return False
        except Exception as e:  # the loop must survive anything one row does
            log.exception("notify row %s failed unexpectedly", row.id)
            self._retry(row, now, type(e).__name__)
            return False
        note_health(self.store, True, now)
        if result.get("invaliduser"):
            log.warning("WeCom could not deliver to some HR on-call ids (not in the app's visible range?)")
        with self.store.transaction():
            self.store.mark_delivered(row.id, now)
            if p.get("type") == "help":
                self.store.kv_set(
                    "wecom.last_help", {"session_id": p.get("session_id"), "ts": float(p.get("ts") or row.created)}
                )
        self.sent += 1
        return True

    def _retry(self, row: Any, now: float, error: str) -> None:
        attempts = int(getattr(row, "attempts", 0) or 0)
        delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * (2**attempts)) * random.uniform(0.8, 1.2)
        self.store.mark_failed(row.id, now + delay, error[:200])

    def probe(self) -> bool:
        """One cheap API call to learn whether WeCom answers; recorded in ``wecom.health``."""
        now = self.clock()
        try:
            oncall = list(self.settings.wecom.hr_oncall)
            if oncall:
                self.client.get_user(oncall[0])
            else:
                self.client.fetch_access_token()
        except WecomUnreachable as e:
            note_health(self.store, False, now, str(e))
            return False
        except WecomError as e:
            # WeCom answered (e.g. an on-call id left the company): reachable, but say why.
            log.warning("WeCom health probe: %s", e)
        note_health(self.store, True, now)
        return True

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Loop until ``stop`` is set; errors are logged and the loop goes on."""
        while not stop.is_set():
            try:
                self.run_once()
                last = self.store.kv_get(HEALTH_KV) or {}
                if self.clock() - float(last.get("at", 0)) >= HEALTH_PROBE_S:
                    self.probe()
            except Exception:
                log.exception("WeCom notifier pass failed")
            stop.wait(interval_s)


def _fit(content: str) -> str:
    data = content.encode("utf-8")
    if len(data) <= MARKDOWN_MAX_BYTES:
        return content
    return data[: MARKDOWN_MAX_BYTES - 3].decode("utf-8", "ignore") + "…"
