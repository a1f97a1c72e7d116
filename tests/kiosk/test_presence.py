from kiosk.capture import FacePresence


def test_presence_is_debounced_both_ways():
    p = FacePresence(lost_after_s=1.0, return_frames=2)
    assert p.update(1, 0.0) is None
    assert p.update(0, 0.5) is None          # one missed detection is not leaving
    assert p.update(0, 1.1) == "lost"
    assert p.update(0, 2.0) is None          # reported once
    assert p.update(1, 2.2) is None          # one detection is not coming back
    assert p.update(1, 2.4) == "returned"
