"""`interview-kiosk --demo`: a whole interview by a synthetic candidate on a throw-away
device (data dir, keys, config, bank, roster under --out), through the real UI, the
file-backed camera and microphone, the real state machine, analysis and encrypted store.

It writes report.json and report.html (and with --headless a screenshot per screen). It
must never touch a real device's data directory or keys: everything lives under --out.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEMO_DEVICE = "demo-kiosk-01"
DEMO_PIN = "2468"
DEMO_JOB = "software_engineer"
DEMO_QUESTIONS = ("swe-01", "swe-02", "swe-03")
DEMO_PREP_S = 5
# What the synthetic candidate says, one answer per question (English: the job's language,
# transcribed by the bundled English recognizer).
DEMO_ANSWERS = (
    "Hello, my name is Jordan. I am a software engineer with five years of experience. "
    "One project I am proud of is a booking system I built with a small team. "
    "It now has ten thousand users, and I made the search three times faster.",
    "Last year our payment service failed every night. My task was to find the bug. "
    "First I tried to reproduce it, and I read the logs carefully. The root cause was a race "
    "condition in the cache. I wrote a fix and added a test, and as a result the errors stopped.",
    "A teammate and I disagreed about which database to use. I listened to his reasons, "
    "and we collected data with a small benchmark. In the end we agreed on his choice, "
    "and we wrote the design review together.",
)


DEMO_SPEECH_WPM = 135   # espeak-ng at its default 150 wpm is misheard by pocketsphinx


def demo_answer_wavs(cache_dir: Path) -> list[Path]:
    """The candidate's spoken answers (espeak-ng, a calm 135 words a minute), made once."""
    import hashlib

    from hardware.synthetic import speak

    out = []
    for i, text in enumerate(DEMO_ANSWERS):
        key = hashlib.sha256(f"{DEMO_SPEECH_WPM}:{text}".encode()).hexdigest()[:12]
        wav = Path(cache_dir) / f"kiosk-demo-answer-{i + 1}-{key}.wav"
        if not wav.exists():
            tmp = wav.with_suffix(".tmp.wav")
            speak(text, "en", tmp, speed_wpm=DEMO_SPEECH_WPM)
            tmp.replace(wav)
        out.append(wav)
    return out


def examples_dir() -> Path:
    for base in (REPO / "examples", Path.cwd() / "examples"):
        if (base / "question_bank.json").exists():
            return base
    raise FileNotFoundError("examples/question_bank.json not found (run the demo from the source tree)")


def prepare_device(out: Path, assets) -> Path:
    """A fresh throw-away device under out/device: config, keys, store, bank, roster.
    Returns the config path."""
    import tomli_w

    from device.config import load_settings
    from device.keys import create_master_key
    from device.store import Store
    from kiosk.pin import hash_pin

    root = out / "device"
    if root.exists():
        shutil.rmtree(root)   # throw-away: the previous demo's device
    root.mkdir(parents=True)
    examples = examples_dir()
    data_dir = root / "data"
    config = {
        "device": {"id": DEMO_DEVICE, "company_name": "星河科技 Galaxy Tech",
                   "site_name": "上海总部 Shanghai HQ", "site_location": "1F 前台 Lobby",
                   "tenant": "demo", "languages": ["zh", "en"], "default_language": "zh"},
        "paths": {"data_dir": str(data_dir)},
        "session": {"face_lost_pause_s": 5},
        # WeCom as a customer would set it up: the idle screen shows the real sign-in QR
        # (the demo itself signs in with the interview code; no network is used).
        "wecom": {"corp_id": "ww5d3f1c2b9a8e7d60", "agent_id": 1000002,
                  "redirect_uri": "https://kiosk-demo.galaxy-tech.example/wecom/callback"},
        "kiosk": {"fullscreen": False, "technician_pin_hash": hash_pin(DEMO_PIN),
                  "camera": {"source": str(assets.video), "width": 640, "height": 480, "fps": 30},
                  "microphone": {"device": ""}},
    }
    cfg_path = root / "config.toml"
    cfg_path.write_text(tomli_w.dumps(config), encoding="utf-8")
    settings = load_settings(cfg_path)
    create_master_key(settings.paths.key_dir)
    store = Store.open_from_settings(settings)
    try:
        code = install_demo_content(store, examples, DEMO_DEVICE)
        media_src = examples / "media"
        if media_src.is_dir():
            shutil.copytree(media_src, data_dir / "bank-media" / "media", dirs_exist_ok=True)
    finally:
        store.close()
    (root / "interview-code.txt").write_text(code + "\n")
    return cfg_path


def install_demo_content(store, examples: Path, device_id: str, *,
                         questions: tuple[str, ...] = DEMO_QUESTIONS, prep_s: int = DEMO_PREP_S,
                         answer_s: int = 45, now: datetime | None = None) -> str:
    """Install the example bank (the English job asking `questions`, short preparation) and
    the example roster (its English candidate booked on `device_id` around `now`).
    Returns that candidate's interview code."""
    from device.questions import QuestionBank, install_bank, load_bank_json
    from device.roster import install_roster, load_roster, roster_from_dict

    doc = load_bank_json(examples / "question_bank.json").model_dump(mode="json")
    for job in doc["jobs"]:
        if job["id"] == DEMO_JOB:
            # Every listed question stays listed (the bank checks each competency is
            # measured); the ones asked are required, in order.
            job["plan"] = {"questions": job["plan"]["questions"], "required": list(questions),
                           "count": len(questions), "order": "fixed"}
    for q in doc["questions"]:
        q["preparation_s"] = min(q["preparation_s"], prep_s)
        q["answer_s"] = min(q["answer_s"], answer_s)
    install_bank(store, QuestionBank.model_validate(doc))
    rdoc = load_roster(examples / "roster.json").model_dump(mode="json")
    now = now or datetime.now(UTC)
    rdoc["date"] = now.date().isoformat()
    entry = next(e for e in rdoc["entries"] if e["job_id"] == DEMO_JOB and e.get("interview_code"))
    entry["device_id"] = device_id
    entry["slot_start"] = (now - timedelta(minutes=10)).isoformat()
    entry["slot_end"] = (now + timedelta(hours=2)).isoformat()
    install_roster(store, roster_from_dict(rdoc))
    return entry["interview_code"]


class DemoPilot:
    """The synthetic candidate: looks at each screen, takes its picture, and touches what a
    person would touch (through the real buttons). It decides nothing for the kiosk."""

    def __init__(self, window, mic, answers: list[Path], code: str, screens_dir: Path | None,
                 on_finished) -> None:
        from kiosk.qt import QTimer

        self.QTimer = QTimer
        self.w = window
        self.mic = mic
        self.answers = answers
        self.code = code
        self.screens_dir = screens_dir
        self.on_finished = on_finished
        self.n = 0
        self.answer_index = 0
        self.helped = False
        self.tech_shown = False
        self.shots: list[Path] = []
        self.finished = False
        window.bridge.view.connect(self._on_view)   # on the GUI thread, whoever published
        self._last_state = None

    def after(self, ms: int, fn) -> None:
        self.QTimer.singleShot(ms, fn)

    def shot(self, name: str) -> None:
        if self.screens_dir is None:
            return
        self.n += 1
        path = self.screens_dir / f"{self.n:02d}-{name}.png"
        self.w.stall.skip_next()
        self.w.grab().save(str(path))
        self.shots.append(path)
        log.info("screenshot %s", path.name)

    def begin(self) -> None:
        self.after(1200, self._idle)

    def _on_view(self, view) -> None:
        state = str(view.state.value)
        if state == self._last_state:
            return
        self._last_state = state
        # Act on the next turn of the event loop, after the window has rendered the state.
        self.after(0, lambda s=state: self._act(s))

    def _act(self, state: str) -> None:
        w = self.w
        if self.finished or str(w.state.value) != state:
            return
        if state == "welcome":
            self.after(900, lambda: (self.shot("welcome"), w.welcome.yes.click()))
        elif state == "device_check":
            self.mic.play(self.answers[0])   # the candidate says a few words for the meter
            self._wait_check(time.monotonic() + 25)
        elif state == "prepare":
            self.after(1500, lambda: (self.shot("prepare"), w.question.start.click()))
        elif state == "answer":
            i = min(self.answer_index, len(self.answers) - 1)
            self.answer_index += 1
            self.mic.play(self.answers[i])
            self._wait_answer(shot_taken=False, started=time.monotonic())
        elif state == "review":
            if not self.helped:
                self.helped = True
                self.after(900, lambda: (self.shot("review"), w.header.help.click()))
            else:
                self.after(700, lambda: (self.shot("review") if self.answer_index == len(self.answers) else None,
                                         w.question.next.click()))
        elif state == "help":
            self.after(900, lambda: (self.shot("help"), w.screens["help"].buttons["help_resolved"].click()))
        elif state == "finishing":
            self.after(50, lambda: self.shot("finishing"))
        elif state == "done":
            self.after(900, lambda: (self.shot("done"), self._technician()))
        elif state in ("declined", "abandoned", "interrupted", "failed"):
            self.after(900, lambda: (self.shot(state), self._finish(ok=False)))

    def _idle(self) -> None:
        w = self.w
        self.shot("idle")
        w.idle.code_btn.click()
        w.idle.type_code(self.code)
        self.after(500, lambda: (self.shot("idle-code"), w.idle.code_ok.click()))

    def _wait_check(self, deadline: float) -> None:
        w = self.w
        if str(w.state.value) != "device_check":
            return
        if w.check.go.isEnabled() and w.check.preview._image is not None and w.check.meter.dbfs > -40:
            self.after(300, lambda: (self.shot("device_check"), w.check.go.click()))
        elif time.monotonic() > deadline:
            log.warning("demo: device check did not pass (%s)", w.check.hint.text())
            self.shot("device_check")
            self._finish(ok=False)
        else:
            self.after(300, lambda: self._wait_check(deadline))

    def _wait_answer(self, shot_taken: bool, started: float) -> None:
        w = self.w
        if str(w.state.value) != "answer":
            return
        playing = self.mic.playing
        if not shot_taken and (time.monotonic() - started > 6.0 or not playing):
            self.shot("answer")
            shot_taken = True
        if not playing:
            self.after(1200, w.question.done.click)   # a breath after the last word
            return
        self.after(250, lambda: self._wait_answer(shot_taken, started))

    def _technician(self) -> None:
        """Show the service screen once: five taps on the logo, then the PIN."""
        if self.tech_shown:
            self._finish(ok=True)
            return
        self.tech_shown = True
        w = self.w
        if str(w.state.value) != "idle":
            # Back to the idle screen first (the thank-you screen times out on its own).
            from device.session import Reset

            w._send(Reset())
            self.after(300, self._technician_taps)
            return
        self._technician_taps()

    def _technician_taps(self) -> None:
        w = self.w
        for _ in range(5):
            w.header.logo.click()
        if w.stack.currentWidget() is not w.tech:
            self._finish(ok=True)
            return
        for ch in DEMO_PIN:
            w.tech.keypad.buttons[ch].click()
        w.tech.ok.click()
        self.after(1500, lambda: (self.shot("technician"), w.tech.leave.click(),
                                  self._finish(ok=True)))

    def _finish(self, ok: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self.after(200, lambda: self.on_finished(ok))


def write_report(settings, store, out: Path) -> tuple[Path, Path] | None:
    """The last finished session's result record as report.json and report.html."""
    rows = list(store.db.query("SELECT session_id, record FROM results ORDER BY created DESC LIMIT 1"))
    if not rows:
        return None
    record = json.loads(rows[0]["record"]) if isinstance(rows[0]["record"], str) else rows[0]["record"]
    json_path = out / "report.json"
    json_path.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    html_path = out / "report.html"
    try:
        from analysis.report import render_html

        html = render_html(record, "zh")
    except Exception as exc:
        log.exception("rendering the HTML report failed")
        html = f"<html><body><h1>Report</h1><p>HTML rendering unavailable: {exc}</p><pre>" \
               f"{json.dumps(record, ensure_ascii=False, indent=2)}</pre></body></html>"
    html_path.write_text(html, encoding="utf-8")
    return json_path, html_path


def run_demo(out: Path, *, headless: bool, assets_dir: Path | None = None,
             timeout_s: float = 600) -> int:
    """Run the whole demo; returns a process exit code."""
    from kiosk.qt import QTimer, make_app

    app = make_app(headless=headless)
    from device.config import load_settings
    from device.store import Store
    from hardware.camera import FileCamera
    from hardware.microphone import FileMic
    from hardware.synthetic import demo_assets
    from kiosk.app import build_kiosk

    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"demo: preparing synthetic candidate media (cached under {assets_dir or 'var/demo-assets'}) …", flush=True)
    assets = demo_assets(assets_dir or Path("var/demo-assets"), answers=(), language="en")  # the video
    answers = demo_answer_wavs(assets_dir or Path("var/demo-assets"))
    cfg = prepare_device(out, assets)
    code = (cfg.parent / "interview-code.txt").read_text().strip()
    settings = load_settings(cfg)
    store = Store.open_from_settings(settings)
    screens_dir = None
    if headless:
        screens_dir = out / "screens"
        if screens_dir.exists():
            shutil.rmtree(screens_dir)
        screens_dir.mkdir(parents=True)
    for stale in ("report.json", "report.html"):
        (out / stale).unlink(missing_ok=True)
    camera = FileCamera(assets.video, pace="real", loop=True)
    mic = FileMic(None, pace="real")
    machine, pipeline, window = build_kiosk(settings, store, camera, mic, lang="zh")
    window.setFixedSize(1280, 800)   # a 1280x800 terminal; content never resizes it
    result = {"ok": False}

    def finished(ok: bool) -> None:
        result["ok"] = ok
        window.allow_close = True   # the kiosk refuses to close otherwise (Qt 6 quit asks windows)
        app.exit(0)

    pilot = DemoPilot(window, mic, answers, code, screens_dir, finished)
    window.show()
    window.start()
    pilot.begin()
    QTimer.singleShot(int(timeout_s * 1000), lambda: (log.error("demo timed out"), app.exit(1)))
    print(f"demo: interview running ({'offscreen' if headless else 'on screen'}); the candidate signs in with code {code}", flush=True)
    app.exec()
    stall = window.stall
    window.stop()
    paths = write_report(settings, store, out)
    store.close()
    took = time.monotonic() - t0
    print(f"demo: GUI thread max stall {stall.max_stall_ms:.0f} ms over {stall.samples} samples "
          f"({stall.stalls_over_50ms} stalls > 50 ms)")
    if getattr(stall, "worst", None):
        print("demo: longest stalls: " + ", ".join(f"{ms:.0f} ms in {where}" for ms, where in stall.worst))
    if window.answer_save_s:
        print("demo: answer saved (analysis finished, recording sealed) "
              + ", ".join(f"{x:.2f}" for x in window.answer_save_s) + " s after 'I'm done'")
    if screens_dir is not None:
        print(f"demo: {len(pilot.shots)} screenshots in {screens_dir}")
    if paths is None:
        print(f"demo: FAILED after {took:.0f} s: no result was produced (see the log above)", file=sys.stderr)
        return 1
    print(f"demo: finished in {took:.0f} s")
    print(f"demo: report written to {paths[0]} and {paths[1]}")
    return 0 if result["ok"] else 1
