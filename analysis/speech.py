"""Streaming speech recognition behind one interface: vosk (per-language model directories
the technician installs) and pocketsphinx's bundled US-English model as the fallback. It
never downloads a model, never logs what was said, and a missing model fails at start.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

SAMPLERATE = 16000
# Word confidence below which a keyword heard only by the biased pass is not counted.
KEYWORD_MIN_CONF = 0.6


class ModelError(RuntimeError):
    """A speech model is missing or broken. The message names the path and what is missing,
    and says how to fix it; raised when a recognizer is made, never mid-answer."""


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the answer
    end: float
    conf: float  # 0..1


@dataclass(frozen=True)
class Partial:
    """Live caption: `text` is everything heard so far, `stable` the part that won't change."""

    text: str
    stable: str = ""


@dataclass
class Transcript:
    text: str
    words: list[Word]
    engine: str  # "vosk" | "pocketsphinx"
    model: str  # model directory name (or "pocketsphinx en-us (bundled)")
    biased: bool  # a keyword grammar was used for this answer
    language: str = ""
    duration_s: float = 0.0
    # Keywords spotted by the grammar-restricted pass (biased recognition), with timings.
    keyword_hits: list[Word] = field(default_factory=list)
    grammar: list[str] = field(default_factory=list)  # phrases the recognizer could be biased to
    grammar_dropped: list[str] = field(default_factory=list)  # rubric phrases the model can't spell
    bias_note: str = ""  # why a grammar was not used, when one was asked for

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["words"] = [[w.word, w.start, w.end, w.conf] for w in self.words]
        d["keyword_hits"] = [[w.word, w.start, w.end, w.conf] for w in self.keyword_hits]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        def words(rows: Any) -> list[Word]:
            out = []
            for r in rows or []:
                if isinstance(r, dict):
                    out.append(
                        Word(
                            str(r["word"]),
                            float(r["start"]),
                            float(r["end"]),
                            float(r.get("conf", 1.0)),
                        )
                    )
                else:
                    out.append(Word(str(r[0]), float(r[1]), float(r[2]), float(r[3])))
            return out

        return cls(
            text=str(d.get("text", "")),
            words=words(d.get("words")),
            engine=str(d.get("engine", "")),
            model=str(d.get("model", "")),
            biased=bool(d.get("biased", False)),
            language=str(d.get("language", "")),
            duration_s=float(d.get("duration_s", 0.0)),
            keyword_hits=words(d.get("keyword_hits")),
            grammar=list(d.get("grammar") or []),
            grammar_dropped=list(d.get("grammar_dropped") or []),
            bias_note=str(d.get("bias_note", "")),
        )


class Recognizer(Protocol):
    engine: str
    model: str
    language: str

    def start(self, grammar: list[str] | None = None) -> None: ...
    def feed(self, pcm: bytes) -> Partial: ...
    def finish(self) -> Transcript: ...


def join_words(words: list[str], language: str) -> str:
    """Text from recognised words: Chinese models emit space-separated words, joined without
    spaces; other languages keep them."""
    if language == "zh":
        return "".join(words)
    return " ".join(words)


def _pcm_bytes(pcm: bytes | np.ndarray) -> bytes:
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise ValueError(f"audio must be int16 PCM, got {pcm.dtype}")
        return pcm.tobytes()
    return bytes(pcm)


# --------------------------------------------------------------------------------- vosk


def check_vosk_model(path: str | Path, language: str = "") -> Path:
    """Raise ModelError unless `path` looks like a complete vosk model directory."""
    p = Path(path)
    what = f"vosk model{' for ' + language if language else ''} at {p}"
    fix = "install it with `kiosk-provision models install` or fix models.vosk in config.toml"
    if not p.exists():
        raise ModelError(f"{what}: the directory does not exist; {fix}")
    if not p.is_dir():
        raise ModelError(f"{what}: not a directory; {fix}")
    missing = [rel for rel in ("am/final.mdl", "conf/mfcc.conf") if not (p / rel).is_file()]
    static = (p / "graph" / "HCLG.fst").is_file() or (p / "HCLG.fst").is_file()
    dynamic = (p / "graph" / "HCLr.fst").is_file() and (p / "graph" / "Gr.fst").is_file()
    if not (static or dynamic):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    if missing:
        raise ModelError(f"{what}: missing {', '.join(missing)}; {fix}")
    return p


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_vosk_model(path: str) -> Any:
    # A model is read-only once loaded, hundreds of MB and seconds to load: one per process,
    # shared by every recognizer of that language.
    import vosk

    vosk.SetLogLevel(-1)
    try:
        return vosk.Model(path)
    except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
        raise ModelError(
            f"vosk model at {path}: vosk could not load it ({e}); the files may be damaged, reinstall the model"
        ) from e


def load_vosk_model(path: str | Path, language: str = "") -> Any:
    p = check_vosk_model(path, language)
    with _load_lock:
        return _load_vosk_model(str(p.resolve()))


def _words_of(result: dict) -> list[Word]:
    return [
        Word(
            str(w["word"]),
            round(float(w["start"]), 3),
            round(float(w["end"]), 3),
            round(float(w.get("conf", 1.0)), 3),
        )
        for w in result.get("result", [])
    ]


class VoskRecognizer:
    """vosk streaming recognition. With a grammar, `bias="dual"` (default) keeps the free
    transcript and runs a second, grammar-restricted pass that spots the rubric's phrases
    (cheap: a tiny graph); `bias="restrict"` recognises only the phrases and `[unk]`."""

    engine = "vosk"

    def __init__(self, model_path: str | Path, language: str, *, bias: str = "dual") -> None:
        if bias not in ("dual", "restrict", "off"):
            raise ValueError(f"bias must be dual|restrict|off, got {bias!r}")
        self.language = language
        self.model_path = Path(model_path)
        self.model = (
            self.model_path.name if self.model_path.name != "model" else self.model_path.parent.name
        )
        self._model = load_vosk_model(model_path, language)
        self.bias = bias
        self._main: Any = None
        self._kw: Any = None
        self._words: list[Word] = []
        self._hits: list[Word] = []
        self._partial = ""
        self._samples = 0
        self._grammar: list[str] = []
        self._dropped: list[str] = []

    def in_vocabulary(self, word: str) -> bool:
        return self._model.vosk_model_find_word(word) >= 0

    def grammar_phrases(self, phrases: list[str]) -> tuple[list[str], list[str]]:
        """The phrases spelled in model words (Chinese segmented by jieba, unknown words split
        into characters), and the ones the model cannot spell."""
        ok, dropped = [], []
        for phrase in phrases:
            spelled = self._spell(phrase)
            if spelled:
                if spelled not in ok:
                    ok.append(spelled)
            else:
                dropped.append(phrase)
        return ok, dropped

    def _spell(self, phrase: str) -> str | None:
        phrase = phrase.strip().lower() if self.language != "zh" else phrase.strip()
        if not phrase:
            return None
        if re.search(r"[\u3400-\u9fff]", phrase):
            from analysis.scoring import _jieba

            parts: list[str] = []
            for tok in _jieba().lcut(phrase.replace(" ", "")):
                if self.in_vocabulary(tok):
                    parts.append(tok)
                elif all(self.in_vocabulary(ch) for ch in tok):
                    parts.extend(tok)
                else:
                    return None
            return " ".join(parts)
        toks = phrase.split()
        return phrase if toks and all(self.in_vocabulary(t) for t in toks) else None

    def start(self, grammar: list[str] | None = None) -> None:
        import vosk

        self._words, self._hits, self._partial, self._samples = [], [], "", 0
        self._grammar, self._dropped = [], []
        self._kw = None
        self._note = ""
        if grammar and self.bias == "off":
            self._note = "keyword biasing is off"
        elif grammar:
            self._grammar, self._dropped = self.grammar_phrases(grammar)
            if not self._grammar:
                self._note = "the model cannot spell any rubric phrase"
            elif self.bias == "dual" and not self.in_vocabulary("[unk]"):
                # Without [unk] a grammar pass forces every sound into some keyword: its hits
                # would be noise, so this model gets no keyword pass.
                self._note = f"model {self.model} has no [unk] word; keyword pass not run"
                self._grammar = []
        spec = None
        if self._grammar:
            # [unk] absorbs everything else; models without it in their vocabulary ignore it.
            spec = json.dumps([*self._grammar, "[unk]"], ensure_ascii=False)
        if spec and self.bias == "restrict":
            self._main = vosk.KaldiRecognizer(self._model, SAMPLERATE, spec)
        else:
            self._main = vosk.KaldiRecognizer(self._model, SAMPLERATE)
            if spec:
                self._kw = vosk.KaldiRecognizer(self._model, SAMPLERATE, spec)
                self._kw.SetWords(True)
        self._main.SetWords(True)

    def feed(self, pcm: bytes | np.ndarray) -> Partial:
        if self._main is None:
            raise RuntimeError("VoskRecognizer.feed before start()")
        data = _pcm_bytes(pcm)
        self._samples += len(data) // 2
        if self._main.AcceptWaveform(data):
            self._words += _words_of(json.loads(self._main.Result()))
            self._partial = ""
        else:
            partial = json.loads(self._main.PartialResult()).get("partial", "")
            self._partial = join_words(partial.split(), self.language)
        if self._kw is not None and self._kw.AcceptWaveform(data):
            self._hits += _words_of(json.loads(self._kw.Result()))
        stable = join_words([w.word for w in self._words], self.language)
        text = join_words(
            [stable, self._partial] if stable and self._partial else [stable or self._partial],
            self.language,
        )
        return Partial(text=text, stable=stable)

    def finish(self) -> Transcript:
        if self._main is None:
            raise RuntimeError("VoskRecognizer.finish before start()")
        self._words += _words_of(json.loads(self._main.FinalResult()))
        if self._kw is not None:
            self._hits += _words_of(json.loads(self._kw.FinalResult()))
        words = (
            [w for w in self._words if w.word != "[unk]"]
            if self.bias != "restrict"
            else self._words
        )
        hits = [w for w in self._hits if w.word != "[unk]"]
        if self.bias == "restrict":
            hits = [w for w in words if w.word != "[unk]"]
        t = Transcript(
            text=join_words([w.word for w in words], self.language),
            words=words,
            engine=self.engine,
            model=self.model,
            biased=bool(self._grammar),
            language=self.language,
            duration_s=round(self._samples / SAMPLERATE, 3),
            keyword_hits=hits,
            grammar=list(self._grammar),
            grammar_dropped=list(self._dropped),
            bias_note=self._note,
        )
        self._main = self._kw = None
        return t


# ------------------------------------------------------------------------ pocketsphinx

_PS_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[[A-Z]+\]|\+\+.*\+\+)$")
FRAME_S = 0.01  # pocketsphinx frames are 10 ms


class PocketsphinxRecognizer:
    """pocketsphinx with its bundled US-English model: the fallback that makes English work
    with no vosk English model installed. No runtime keyword grammar: a transcript from it
    is never `biased`.

    Two things make it usable on a kiosk microphone: each answer's first `prime_s` seconds
    are decoded twice, once to settle the cepstral mean (a fresh estimate is far off and
    ruins the first sentences: WER 0.57 -> 0.43 measured) and again for real; and the stream
    is cut into utterances at pauses of `pause_s`, so words become stable as the person
    speaks."""

    engine = "pocketsphinx"
    model = "pocketsphinx en-us (bundled)"

    def __init__(self, language: str = "en", *, pause_s: float = 0.6, prime_s: float = 2.0) -> None:
        if language != "en":
            raise ModelError(f"pocketsphinx has only a US-English model; no model for {language!r}")
        try:
            from pocketsphinx import Decoder

            self._decoder = Decoder(loglevel="FATAL")
        except Exception as e:
            raise ModelError(
                f"pocketsphinx's bundled English model could not be loaded ({e}); reinstall the pocketsphinx package"
            ) from e
        self.language = language
        self.pause_s = pause_s
        self.prime_s = prime_s
        self._in_utt = False
        self._note = ""
        self._reset()

    def _reset(self) -> None:
        self._words: list[Word] = []
        self._samples = 0
        self._utt_start = 0  # sample index where the current utterance began
        self._silent = 0  # consecutive quiet samples
        self._voiced = False  # the current utterance has heard speech
        self._partial = ""
        self._since_hyp = 0
        self._started = False
        self._priming = self.prime_s > 0
        self._prime_buf: list[bytes] = []
        self._prime_n = 0
        self._levels: list[float] = []

    def start(self, grammar: list[str] | None = None) -> None:
        if self._in_utt:
            self._decoder.end_utt()
            self._in_utt = False
        self._reset()
        self._started = True
        self._note = "pocketsphinx has no runtime keyword grammar" if grammar else ""

    def _close_utt(self) -> None:
        d = self._decoder
        d.end_utt()
        self._in_utt = False
        offset = self._utt_start / SAMPLERATE
        for s in d.seg() or []:
            w = s.word
            if _PS_FILLERS.match(w):
                continue
            w = re.sub(r"\(\d+\)$", "", w)
            self._words.append(
                Word(
                    w,
                    round(offset + s.start_frame * FRAME_S, 3),
                    round(offset + (s.end_frame + 1) * FRAME_S, 3),
                    round(min(1.0, max(0.0, float(s.prob))), 3),
                )
            )
        self._partial = ""

    def _hyp(self) -> None:
        self._since_hyp = 0
        hyp = self._decoder.hyp()
        self._partial = hyp.hypstr if hyp is not None else ""

    def _voiced_now(self, arr: np.ndarray) -> bool:
        rms = float(np.sqrt(np.mean(arr.astype(np.float32) ** 2))) if arr.size else 0.0
        self._levels.append(rms)
        # Quiet = near this answer's own noise floor (rooms and microphones differ).
        floor = float(np.percentile(self._levels[-200:], 10))
        return rms > max(200.0, 3.0 * floor)

    def _process(self, data: bytes) -> None:
        step = SAMPLERATE // 10 * 2  # 100 ms of int16
        for i in range(0, len(data), step):
            part = data[i : i + step]
            arr = np.frombuffer(part, dtype=np.int16)
            if not self._in_utt:
                self._decoder.start_utt()
                self._in_utt = True
                self._utt_start = self._samples
                self._voiced = False
                self._silent = 0
            self._decoder.process_raw(part, False, False)
            self._samples += arr.size
            self._since_hyp += arr.size
            if self._voiced_now(arr):
                self._voiced = True
                self._silent = 0
            else:
                self._silent += arr.size
            if self._voiced and self._silent >= self.pause_s * SAMPLERATE:
                self._close_utt()
            elif self._since_hyp >= SAMPLERATE // 4:  # a partial 4x a second is plenty
                self._hyp()

    def _end_priming(self) -> None:
        if self._in_utt:
            self._decoder.end_utt()  # the priming pass: only its feature statistics are kept
            self._in_utt = False
        self._priming = False
        buf, self._prime_buf = b"".join(self._prime_buf), []
        self._process(buf)

    def feed(self, pcm: bytes | np.ndarray) -> Partial:
        if not self._started:
            raise RuntimeError("PocketsphinxRecognizer.feed before start()")
        data = _pcm_bytes(pcm)
        if self._priming:
            if not self._in_utt:
                self._decoder.start_utt()
                self._in_utt = True
            self._decoder.process_raw(data, False, False)
            self._prime_buf.append(data)
            self._prime_n += len(data) // 2
            self._since_hyp += len(data) // 2
            if self._prime_n >= self.prime_s * SAMPLERATE:
                self._end_priming()
            elif self._since_hyp >= SAMPLERATE // 4:
                self._hyp()
        else:
            self._process(data)
        stable = " ".join(w.word for w in self._words)
        return Partial(text=" ".join(x for x in (stable, self._partial) if x), stable=stable)

    def finish(self) -> Transcript:
        if not self._started:
            raise RuntimeError("PocketsphinxRecognizer.finish before start()")
        if self._priming:
            self._end_priming()
        if self._in_utt:
            self._close_utt()
        t = Transcript(
            text=" ".join(w.word for w in self._words),
            words=list(self._words),
            engine=self.engine,
            model=self.model,
            biased=False,
            language=self.language,
            duration_s=round(self._samples / SAMPLERATE, 3),
            bias_note=self._note,
        )
        self._started = False
        return t


# ------------------------------------------------------------------------------ choice


def make_recognizer(settings: Any, language: str, *, bias: str = "dual") -> Recognizer:
    """The recognizer for `language`: the vosk model configured in settings.models.vosk, else
    (English only) pocketsphinx when settings.models.pocketsphinx_en. ModelError otherwise."""
    models = settings.models
    path = (models.vosk or {}).get(language)
    if path:
        return VoskRecognizer(path, language, bias=bias)
    if language == "en" and models.pocketsphinx_en:
        return PocketsphinxRecognizer("en")
    raise ModelError(
        f"no speech model for language {language!r}: set models.vosk.{language} in config.toml to an "
        "installed vosk model directory (kiosk-provision models install)"
        + ("" if language != "en" else ", or enable models.pocketsphinx_en")
    )


def transcribe(
    recognizer: Recognizer,
    pcm: np.ndarray,
    *,
    grammar: list[str] | None = None,
    chunk_s: float = 0.1,
) -> Transcript:
    """Run a whole recording through a recognizer in chunks, as the microphone would."""
    recognizer.start(grammar)
    step = int(SAMPLERATE * chunk_s)
    for i in range(0, len(pcm), step):
        recognizer.feed(pcm[i : i + step])
    return recognizer.finish()
