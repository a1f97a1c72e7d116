"""Config pushed by HR reaches the running kiosk between candidates: a signed `down/config`
applied by the sync daemon's handler is picked up when the machine is back at idle, never
while a candidate is in an interview (they keep the timeouts they started with)."""

from __future__ import annotations

import time

from device import session as S
from device.session import SessionMachine, State
from kiosk.app import follow_pushed_config
from sync.cache import DownlinkCache
from sync.connector.publish import down_topic, make_envelope
from sync.signing import generate_signing_key, load_private_key


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_a_config_pushed_during_an_interview_applies_from_the_next_one(store, settings, tmp_path):
    generate_signing_key(tmp_path / "hr.key", tmp_path / "hr.pub")
    store.cache_put("pubkey", "downlink", 1, {"pem": (tmp_path / "hr.pub").read_text(encoding="ascii")})
    dev = settings.device

    def push(version: int, payload: dict) -> None:
        env = make_envelope(load_private_key(tmp_path / "hr.key"), kind="config", tenant=dev.tenant,
                            version=version, payload=payload, device_id=dev.id)
        DownlinkCache(store, settings, clock=time.time).handle(
            down_topic(dev.tenant, dev.id, "config"), env.model_dump_json().encode())

    clock = Clock()
    machine = SessionMachine(store, settings, clock=clock)
    machine.subscribe(follow_pushed_config(machine, store, settings, None))
    old = settings.session.timeouts.verifying

    machine.handle(S.SignInStarted("code"))          # a candidate is signing in
    push(2, {"session": {"timeouts": {"verifying": old + 60}}})
    machine.tick()
    assert machine.settings.session.timeouts.verifying == old   # not mid-interview
    clock.t += old
    assert machine.tick() is State.IDLE                  # the old timeout still ruled
    assert machine.settings.session.timeouts.verifying == old + 60
    assert machine.settings.device == settings.device

    machine.handle(S.SignInStarted("code"))
    clock.t += old
    assert machine.tick() is State.VERIFYING             # the new one rules now
    clock.t += 60
    assert machine.tick() is State.IDLE
