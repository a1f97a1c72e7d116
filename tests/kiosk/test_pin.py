from kiosk.pin import LOCKOUT_S, MAX_TRIES, PinGate, hash_pin, verify_pin


def test_pin_hash_verifies_only_the_right_pin():
    h = hash_pin("2468")
    assert h.startswith("scrypt$") and "2468" not in h
    assert verify_pin(h, "2468") and not verify_pin(h, "2469")
    assert not verify_pin("garbage", "2468")


def test_lockout_after_five_wrong_tries_survives_a_restart(store):
    now = [1000.0]
    gate = PinGate(hash_pin("2468"), store, clock=lambda: now[0])
    for _ in range(MAX_TRIES - 1):
        assert gate.check("0000") == (False, "wrong")
    assert gate.tries_left() == 1
    assert gate.check("0000") == (False, "locked")
    restarted = PinGate(gate.pin_hash, store, clock=lambda: now[0])
    assert restarted.check("2468") == (False, "locked")
    now[0] += LOCKOUT_S + 1
    assert restarted.check("2468") == (True, "ok")
    assert restarted.tries_left() == MAX_TRIES


def test_no_pin_configured_means_no_service_mode(store):
    assert PinGate(None, store).check("1234") == (False, "not_configured")


def test_without_a_pin_the_service_screen_says_how_to_set_one_and_opens_for_nothing(make_kiosk):
    """There is no default PIN: until `kiosk-provision pin set`, no PIN opens the panel."""
    k = make_kiosk(kiosk={"technician_pin_hash": None})
    w = k.window
    k.wait_state("idle")
    for _ in range(5):
        w.header.logo.click()
    assert w.current_screen() is w.tech
    k.qtbot.waitUntil(lambda: "kiosk-provision pin set" in w.tech.entry.error.text(), timeout=5000)
    for pin in ("2468", "000000"):
        for ch in pin:
            w.tech.entry.keypad.buttons[ch].click()
        w.tech.entry.ok.click()
        k.qtbot.waitUntil(w.tech.entry.ok.isEnabled, timeout=5000)
        assert not w.technician
        assert "kiosk-provision pin set" in w.tech.entry.error.text()
