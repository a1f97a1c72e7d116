"""``python -m sync.wecom``: run only the WeCom part of the sync daemon (sign-in callback and
HR notifier) for a device config: for the demo and for sites without MQTT/HTTPS delivery.

Never prints the secret; ``--set-secret-stdin`` seals it from standard input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set-secret-stdin", action="store_true", help="seal the WeCom app secret read from stdin, then exit")
    p.add_argument("--fake-wecom", metavar="DIRECTORY_JSON",
                   help="demo only: run a local fake WeCom with this directory and use it (prints its URL)")


def main(argv: list[str] | None = None) -> int:
    from sync.daemon import daemon_command_line

    a, settings = daemon_command_line(argv, prog="python -m sync.wecom", description=__doc__,
                                      section="wecom", add_arguments=_arguments)
    if settings is None:
        return 2
    from sync.wecom import start_wecom, store_secret

    if a.set_secret_stdin:
        secret = sys.stdin.readline().strip()
        if not secret:
            print("sync.wecom: empty secret on stdin", file=sys.stderr)
            return 2
        store_secret(settings, secret)
        print("WeCom secret sealed")
        return 0
    from device.store import Store

    client = None
    fake = None
    if a.fake_wecom:
        from pathlib import Path

        from sync.wecom.client import WecomClient
        from sync.wecom.fakeserver import FakeDirectory, FakeWecomServer

        directory = FakeDirectory.from_file(Path(a.fake_wecom))
        fake = FakeWecomServer(directory).start()
        # The fake's corp and agent win over the config's, so the QR and the API agree.
        settings = settings.model_copy(update={"wecom": settings.wecom.model_copy(update={
            "corp_id": directory.corp_id, "agent_id": directory.agent_id, "api_base_url": fake.base_url})})
        client = WecomClient(directory.corp_id, directory.secret, directory.agent_id, base_url=fake.base_url)
        print(f"fake WeCom: {fake.root_url}", flush=True)
    store = Store.open_from_settings(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = start_wecom(settings, store, stop, client=client)
    if not threads:
        store.close()
        return 2
    print(f"WeCom sign-in callback on {settings.wecom.redirect_uri}; notifier running", flush=True)
    stop.wait()
    for t in threads:
        t.join(timeout=5)
    if fake is not None:
        fake.stop()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
