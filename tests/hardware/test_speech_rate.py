"""The synthetic candidate's speaking rate: speak() honours speed_wpm, and its default
(SPEECH_WPM) is the rate pocketsphinx transcribes at least as well as the slower 135 wpm
the demo once used (measured figures in hardware/synthetic.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from analysis.speech import PocketsphinxRecognizer, transcribe
from hardware.synthetic import SPEECH_WPM, read_wav, speak

REPO = Path(__file__).resolve().parents[2]


def _wer(ref: str, hyp: str) -> float:
    r = re.sub(r"[^a-z' ]", " ", ref.lower()).split()
    h = re.sub(r"[^a-z' ]", " ", hyp.lower()).split()
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


def test_speed_wpm_sets_the_speaking_rate(tmp_path):
    text = "I led a team of four engineers on the payment service."
    slow = read_wav(speak(text, "en", tmp_path / "slow.wav", speed_wpm=110))
    fast = read_wav(speak(text, "en", tmp_path / "fast.wav", speed_wpm=190))
    assert len(slow) > 1.4 * len(fast)


def test_the_default_rate_transcribes_no_worse_than_135_wpm(tmp_path):
    samples = json.loads((REPO / "examples" / "sample_answers.json").read_text(encoding="utf-8"))["answers"]
    texts = [samples[q]["text"] for q in ("swe-01", "swe-02", "swe-03")]
    rec = PocketsphinxRecognizer()

    def mean_wer(wpm: int) -> float:
        rates = [_wer(t, transcribe(rec, read_wav(speak(t, "en", tmp_path / f"{wpm}-{i}.wav",
                                                        speed_wpm=wpm))).text)
                 for i, t in enumerate(texts)]
        return sum(rates) / len(rates)

    at_default, at_135 = mean_wer(SPEECH_WPM), mean_wer(135)
    print(f"mean WER at {SPEECH_WPM} wpm {at_default:.3f}, at 135 wpm {at_135:.3f}")
    assert at_default <= at_135 and at_default <= 0.3
