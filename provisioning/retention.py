"""`kiosk-provision retention run`: delete interviews past their retention period.

Run nightly by interview-retention.timer (as the kiosk user, no network). Only data that
was delivered to HR is deleted (Store.purge_delivered); once HR's connector sends receipts,
a result or event counts as delivered only when HR receipted it (a broker's ack alone can be
lost in a broker crash). The purge is audited with counts.
"""

from __future__ import annotations

import argparse
import logging
import time

from provisioning.cli import Context, ExitCode

log = logging.getLogger("provisioning")
DAY = 86400.0


def run_retention(ctx: Context, args: argparse.Namespace) -> int:
    from device.config import effective_settings
    from sync.outbox import receipts_required

    store = ctx.store()
    # HR's pushed [retention] wins over the TOML file for the keys it sets.
    settings, pushed_version = effective_settings(store, ctx.settings())
    now = time.time()
    receipts = receipts_required(store)
    counts = store.purge_delivered(
        now - settings.retention.days * DAY,
        interrupted_older_than=now - settings.retention.interrupted_days * DAY,
        require_receipts=receipts,
    )
    ctx.record("retention.purge", {"days": settings.retention.days,
                                   "interrupted_days": settings.retention.interrupted_days,
                                   "require_receipts": receipts,
                                   "pushed_config": pushed_version, **counts})
    log.info("retention purge: %s", counts)
    if ctx.json_output:
        ctx.emit_json(counts)
    else:
        ctx.say("保留期 {d} 天：删除了 {s} 场面试、{m} 个录像录音文件、{o} 条已发送记录",
                "retention {d} days: deleted {s} interviews, {m} recordings, {o} delivered outbox rows",
                d=settings.retention.days, s=counts.get("sessions", 0), m=counts.get("media_files", 0),
                o=counts.get("outbox", 0))
    return ExitCode.OK
