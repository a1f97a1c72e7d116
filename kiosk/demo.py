"""`interview-kiosk --demo`: a whole interview by a synthetic candidate on a throw-away
device (data dir, keys, config, bank, roster under --out), through the real UI, the
file-backed camera and microphone, the real state machine, analysis and encrypted store.
The candidate signs in through WeCom: the demo runs the WeCom half of the sync service
against a local fake WeCom (`python -m sync.wecom --fake-wecom`) and a simulated phone that
scans the QR code off the idle screen; HR's WeCom messages land in wecom-messages.json.

It writes report.json and report.html (and with --headless a screenshot per screen). It
must never touch a real device's data directory or keys (everything lives under --out),
never import `sync` (the WeCom side runs as child processes), and never leave them running.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
# WeCom for the demo: the fake WeCom's corp (examples/wecom_directory.json), the demo
# candidate's member id on it, and the HR person on call who receives the messages.
DEMO_CORP_ID = "wwdemo0000000001"
DEMO_AGENT_ID = 1000002
DEMO_WECOM_USER = "JordanLee"
DEMO_HR = "HRZhang"
WECOM_SECRET_NAME = "wecom_secret"   # sync.wecom.SECRET_NAME (the kiosk may not import sync)
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


def demo_answer_wavs(cache_dir: Path) -> list[Path]:
    """The candidate's spoken answers (espeak-ng at the rate pocketsphinx hears best), made once."""
    import hashlib

    from hardware.synthetic import SPEECH_WPM, speak

    out = []
    for i, text in enumerate(DEMO_ANSWERS):
        key = hashlib.sha256(f"{SPEECH_WPM}:{text}".encode()).hexdigest()[:12]
        wav = Path(cache_dir) / f"kiosk-demo-answer-{i + 1}-{key}.wav"
        if not wav.exists():
            tmp = wav.with_suffix(".tmp.wav")
            speak(text, "en", tmp, speed_wpm=SPEECH_WPM)
            tmp.replace(wav)
        out.append(wav)
    return out


def examples_dir() -> Path:
    for base in (REPO / "examples", Path.cwd() / "examples"):
        if (base / "question_bank.json").exists():
            return base
    raise FileNotFoundError("examples/question_bank.json not found (run the demo from the source tree)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_device(out: Path, assets, callback_port: int | None = None) -> Path:
    """A fresh throw-away device under out/device: config (WeCom sign-in on a plain-HTTP
    callback at 127.0.0.1:`callback_port`), keys and the sealed WeCom secret, store, bank,
    roster. Returns the config path."""
    import tomli_w

    from device.config import load_settings
    from device.keys import SecretBox, create_master_key, load_master_key
    from device.store import Store
    from kiosk.pin import hash_pin

    callback_port = callback_port or free_port()
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
        # WeCom as a customer would set it up, except that the callback is plain HTTP on
        # loopback and the corp is the local fake WeCom's (no network is used).
        "wecom": {"corp_id": DEMO_CORP_ID, "agent_id": DEMO_AGENT_ID,
                  "redirect_uri": f"http://127.0.0.1:{callback_port}/wecom/callback",
                  "callback_host": "127.0.0.1", "callback_port": callback_port,
                  "hr_oncall": [DEMO_HR]},
        "kiosk": {"fullscreen": False, "technician_pin_hash": hash_pin(DEMO_PIN),
                  "camera": {"source": str(assets.video), "width": 640, "height": 480, "fps": 30},
                  "microphone": {"device": ""}},
    }
    cfg_path = root / "config.toml"
    cfg_path.write_text(tomli_w.dumps(config), encoding="utf-8")
    settings = load_settings(cfg_path)
    create_master_key(settings.paths.key_dir)
    # The app secret sealed like `kiosk-provision wecom set-secret` does, never in the config.
    secret = json.loads((examples / "wecom_directory.json").read_text(encoding="utf-8"))["secret"]
    SecretBox(settings.paths.key_dir, load_master_key(settings.paths.key_dir)).seal(
        WECOM_SECRET_NAME, secret.encode("utf-8"))
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


# Run in each child before it becomes `python -m ...`: the kernel sends it SIGTERM when the
# demo dies, however it dies (even SIGKILL), so no WeCom service outlives a demo. prctl is
# applied in the child itself (a preexec_fn is unsafe once Qt has started threads).
_CHILD_SHIM = ("import ctypes, os, signal, sys; "
               "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "  # PR_SET_PDEATHSIG
               "os.getppid() == int(sys.argv[1]) or sys.exit(3); "
               "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


def spawn(args: list[str], **kw) -> subprocess.Popen:
    """`python <args>` as a child that dies with the demo."""
    return subprocess.Popen([sys.executable, "-c", _CHILD_SHIM, str(os.getpid()), *args],
                            cwd=str(REPO), **kw)


def stop_child(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class WecomSide:
    """The WeCom half of the sync service with its own fake WeCom, as a child process
    (`python -m sync.wecom --config CFG --fake-wecom DIRECTORY`). Its stderr goes to
    `log_path`; `ready` is set once the callback listens, `failed` says why it never did."""

    def __init__(self, config: Path, directory: Path, log_path: Path) -> None:
        self.config = config
        self.directory = directory
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.fake_root: str | None = None
        self.ready = threading.Event()
        self.failed: str | None = None

    def start(self) -> WecomSide:
        self._log = open(self.log_path, "w", encoding="utf-8")   # noqa: SIM115 (closed in stop)
        try:
            self.proc = spawn(["-m", "sync.wecom", "--config", str(self.config),
                               "--fake-wecom", str(self.directory)],
                              stdout=subprocess.PIPE, stderr=self._log, text=True)
        except OSError as exc:
            self.failed = f"could not start python -m sync.wecom: {exc}"
            self.ready.set()
            return self
        threading.Thread(target=self._read, name="demo-wecom-out", daemon=True).start()
        return self

    def _read(self) -> None:
        """Its stdout: the fake's root URL, then the callback's ready line (then drained)."""
        for line in self.proc.stdout:
            m = re.search(r"fake WeCom: (http://\S+)", line)
            if m:
                self.fake_root = m.group(1)
            if "sign-in callback on" in line and self.fake_root:
                self.ready.set()
        if not self.ready.is_set():
            self.failed = (f"python -m sync.wecom exited ({self.proc.wait()}) before its sign-in "
                           f"callback listened; see {self.log_path}")
            self.ready.set()

    @property
    def ok(self) -> bool:
        return self.ready.is_set() and self.failed is None and self.proc is not None \
            and self.proc.poll() is None

    def messages(self, timeout: float = 5.0) -> list[dict]:
        """What HR's WeCom received (the fake's record), [] when it cannot be asked."""
        import httpx

        if not self.fake_root:
            return []
        try:
            r = httpx.get(self.fake_root + "/_fake/messages", timeout=timeout)
            r.raise_for_status()
            return list(r.json().get("messages", []))
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("demo: could not read the fake WeCom's messages: %s", exc)
            return []

    def stop(self) -> None:
        stop_child(self.proc)
        if getattr(self, "_log", None):
            self._log.close()


def read_qr(image) -> str | None:
    """The text of the QR code in a screenshot (a path or a BGR array), None if none reads."""
    import cv2

    img = cv2.imread(str(image)) if isinstance(image, (str, Path)) else image
    if img is None:
        return None
    from device.qr import read_qr as read

    return read(img)


def message_kind(msg: dict) -> str:
    """A WeCom message's headline (e.g. "面试结束 · Interview finished")."""
    body = msg.get(msg.get("msgtype", ""), {}) or {}
    text = body.get("title") or body.get("content") or ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.lstrip("# ").strip()


class DemoPilot:
    """The synthetic candidate: looks at each screen, takes its picture, and touches what a
    person would touch (through the real buttons). It decides nothing for the kiosk."""

    def __init__(self, window, mic, answers: list[Path], code: str, screens_dir: Path | None,
                 on_finished, wecom: WecomSide | None = None) -> None:
        from kiosk.qt import QTimer

        self.QTimer = QTimer
        self.w = window
        self.mic = mic
        self.answers = answers
        self.code = code
        self.screens_dir = screens_dir
        self.on_finished = on_finished
        self.wecom = wecom
        self.signin_via: str | None = None    # "wecom" or "code": how the candidate tried
        self.qr_source: str | None = None     # "screen" (decoded off the screenshot) or "kiosk"
        self.phone: subprocess.Popen | None = None
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
        self._wait_qr(time.monotonic() + 60)

    def _wait_qr(self, deadline: float) -> None:
        """Wait until the idle screen shows the sign-in QR and the WeCom side listens, then
        take the idle picture and scan it; the interview code when either never happens."""
        w = self.w
        if self.finished or str(w.state.value) != "idle":
            return
        showing = w.idle.qr.isVisible() and getattr(w, "_qr", None) is not None
        wecom_ready = self.wecom is None or self.wecom.ready.is_set()
        if not (showing and wecom_ready) and time.monotonic() < deadline:
            self.after(250, lambda: self._wait_qr(deadline))
            return
        self.shot("idle")
        if not showing:
            self._sign_in_with_code("the idle screen shows no sign-in QR code")
        elif self.wecom is None or not self.wecom.ok:
            why = (self.wecom.failed if self.wecom is not None else None) or \
                "the WeCom service did not start within 60 s"
            self._sign_in_with_code(f"WeCom is not available ({why})")
        else:
            self._scan()

    def _screen_qr(self) -> str | None:
        """The phone's camera: decode the QR code from a picture of the screen as it is."""
        import tempfile

        if self.shots and self.shots[-1].name.endswith("-idle.png"):
            return read_qr(self.shots[-1])
        with tempfile.TemporaryDirectory() as tmp:   # on screen: no screenshot was kept
            path = Path(tmp) / "screen.png"
            self.w.stall.skip_next()
            self.w.grab().save(str(path))
            return read_qr(path)

    def _scan(self) -> None:
        w = self.w
        self.signin_via = "wecom"
        url = self._screen_qr()
        if url and url.startswith("https://"):
            self.qr_source = "screen"
            print("demo: the candidate's phone scanned the QR code off the idle screen", flush=True)
        else:
            self.qr_source = "kiosk"
            url = w._qr.url
            log.warning("demo: the QR code could not be read off the screenshot; using the URL the kiosk shows")
            print("demo: the QR code could not be decoded from the screenshot; the phone uses the "
                  "URL the kiosk shows instead", flush=True)
        try:
            self.phone = spawn(["-m", "sync.wecom.phone", url, "--fake", self.wecom.fake_root,
                                "--as", DEMO_WECOM_USER],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            self._sign_in_with_code(f"the simulated phone did not start ({exc})")
            return
        self._wait_phone(time.monotonic() + 60)

    def _wait_phone(self, deadline: float) -> None:
        p = self.phone
        if p.poll() is None:
            if time.monotonic() < deadline:
                self.after(250, lambda: self._wait_phone(deadline))
                return
            stop_child(p, timeout=5)
            self._sign_in_with_code("the simulated phone got no answer within 60 s")
            return
        out, err = p.communicate()
        line = (out or "").strip().splitlines()[-1:] or [(err or "").strip()[-300:]]
        print(f"demo: phone ({DEMO_WECOM_USER} in WeCom) sees: {line[0]}", flush=True)
        if p.returncode != 0:
            self._sign_in_with_code(f"the WeCom sign-in failed (phone exit {p.returncode})")
            return
        # The callback wrote a verification; the kiosk picks it up on its own within a second.
        self.after(20000, self._still_idle)

    def _still_idle(self) -> None:
        if not self.finished and str(self.w.state.value) == "idle" and self.signin_via == "wecom":
            self._sign_in_with_code("the kiosk did not take up the WeCom sign-in within 20 s")

    def _sign_in_with_code(self, reason: str) -> None:
        w = self.w
        self.signin_via = "code"
        log.warning("demo: %s; signing in with the interview code", reason)
        print(f"demo: {reason}; the candidate signs in with the interview code {self.code} instead",
              flush=True)
        w.idle.code_btn.click()
        w.idle.type_code(self.code)
        self.after(500, lambda: (self.shot("idle-code"), w.idle.code_page.ok.click()))

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
            w.tech.entry.keypad.buttons[ch].click()
        w.tech.entry.ok.click()
        self.after(1500, lambda: (self.shot("technician"), w.tech.leave.click(),
                                  self._finish(ok=True)))

    def _finish(self, ok: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self.after(200, lambda: self.on_finished(ok))


def write_report(settings, store, out: Path) -> tuple[Path, Path, dict] | None:
    """The last finished session's result record as report.json and report.html (with the
    bank's Chinese/English competency names). Returns the paths and the record."""
    rows = list(store.db.query("SELECT session_id, record FROM results ORDER BY created DESC LIMIT 1"))
    if not rows:
        return None
    record = json.loads(rows[0]["record"]) if isinstance(rows[0]["record"], str) else rows[0]["record"]
    json_path = out / "report.json"
    json_path.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    html_path = out / "report.html"
    try:
        from analysis.report import render_html
        from device.questions import current_bank

        bank = current_bank(store)
        html = render_html(record, "zh", dimension_names=dict(bank.dimensions) if bank else None)
    except Exception as exc:
        log.exception("rendering the HTML report failed")
        html = f"<html><body><h1>Report</h1><p>HTML rendering unavailable: {exc}</p><pre>" \
               f"{json.dumps(record, ensure_ascii=False, indent=2)}</pre></body></html>"
    html_path.write_text(html, encoding="utf-8")
    return json_path, html_path, record


def signin_of(store, session_id: str) -> dict:
    """How the session's candidate signed in: the session's method and its verification row."""
    rows = list(store.db.query("SELECT data FROM sessions WHERE id = ?", [session_id]))
    data = json.loads(rows[0]["data"] or "{}") if rows else {}
    out = {"method": data.get("method") or None, "verification_id": data.get("verification_id")}
    if out["verification_id"]:
        ver = list(store.db.query("SELECT method, status, candidate_ref FROM verifications WHERE id = ?",
                                  [out["verification_id"]]))
        if ver:
            out["verification"] = dict(ver[0])
    return out


def wait_for_hr_messages(wecom: WecomSide, timeout_s: float = 30.0) -> list[dict]:
    """HR's messages at the fake WeCom, once the interview's result message has arrived (the
    notifier sends from the outbox about once a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        msgs = wecom.messages()
        if any("finished" in message_kind(m) or "Consent declined" in message_kind(m)
               or "fault" in message_kind(m) for m in msgs) or time.monotonic() > deadline \
                or not wecom.ok:
            return msgs
        time.sleep(0.5)


# The terminal the headless demo pretends to be (kiosk.__main__.DESIGN_SIZE).
DEMO_SCREEN = {"synchronousWindowSystemEvents": False, "windowFrameMargins": False,
               "screens": [{"name": "kiosk", "x": 0, "y": 0, "width": 1280, "height": 800,
                            "logicalDpiX": 96, "logicalDpiY": 96, "dpr": 1}]}


def offscreen_platform(out: Path) -> str:
    """QT_QPA_PLATFORM for a headless demo: Qt's offscreen platform with a 1280x800 screen
    (its config file is written to `out`). Set before the QApplication is made; never used
    on a real terminal, whose display check reads the real screen."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "offscreen-screen.json"
    path.write_text(json.dumps(DEMO_SCREEN), encoding="utf-8")
    return f"offscreen:configfile={path}"


def run_demo(out: Path, *, headless: bool, assets_dir: Path | None = None,
             timeout_s: float = 600) -> int:
    """Run the whole demo; returns a process exit code. The WeCom child processes are
    stopped on every way out (and die with this process if it is killed)."""
    children: list[WecomSide] = []
    try:
        return _run_demo(out, headless=headless, assets_dir=assets_dir, timeout_s=timeout_s,
                         children=children)
    finally:
        for side in children:
            side.stop()


def _run_demo(out: Path, *, headless: bool, assets_dir: Path | None, timeout_s: float,
              children: list[WecomSide]) -> int:
    from kiosk.qt import QTimer, make_app

    if headless:
        # Qt's offscreen platform is an 800x800 screen by default: the self-test would fail
        # the display check (at least 1024x600) for the demo's own reason. A virtual
        # 1280x800 terminal instead, so the check passes or fails on what it really tests.
        os.environ["QT_QPA_PLATFORM"] = offscreen_platform(Path(out).absolute())
    app = make_app(headless=False)   # the platform is chosen above (headless=True would reset it)
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
    for stale in ("report.json", "report.html", "wecom-messages.json", "demo-summary.json"):
        (out / stale).unlink(missing_ok=True)
    # The WeCom side starts first: it needs a few seconds, while the kiosk loads its models.
    wecom = WecomSide(cfg, examples_dir() / "wecom_directory.json", out / "wecom.log")
    children.append(wecom)
    wecom.start()
    print(f"demo: WeCom sign-in service starting (fake WeCom, callback {settings.wecom.redirect_uri}; "
          f"log in {out / 'wecom.log'})", flush=True)
    store = Store.open_from_settings(settings)
    screens_dir = None
    if headless:
        screens_dir = out / "screens"
        if screens_dir.exists():
            shutil.rmtree(screens_dir)
        screens_dir.mkdir(parents=True)
    camera = FileCamera(assets.video, pace="real", loop=True)
    mic = FileMic(None, pace="real")
    machine, pipeline, window = build_kiosk(settings, store, camera, mic, lang="zh")
    window.setFixedSize(1280, 800)   # a 1280x800 terminal; content never resizes it
    result = {"ok": False}

    def finished(ok: bool) -> None:
        result["ok"] = ok
        window.allow_close = True   # the kiosk refuses to close otherwise (Qt 6 quit asks windows)
        app.exit(0)

    def interrupted(signum, _frame) -> None:
        # Runs between Qt events (the kiosk's timers hand control to Python several times a second).
        log.warning("demo: stopped by signal %d", signum)
        result["signal"] = signum
        window.allow_close = True
        app.exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupted)
    pilot = DemoPilot(window, mic, answers, code, screens_dir, finished, wecom=wecom)
    window.show()
    window.start()
    pilot.begin()
    QTimer.singleShot(int(timeout_s * 1000), lambda: (log.error("demo timed out"), app.exit(1)))
    print(f"demo: interview running ({'offscreen' if headless else 'on screen'}); the candidate "
          f"signs in by scanning the WeCom QR code as {DEMO_WECOM_USER} (interview code {code} "
          "as the fallback)", flush=True)
    app.exec()
    stall = window.stall
    window.stop()
    if "signal" in result:
        store.close()
        print("demo: interrupted; WeCom service stopped", file=sys.stderr)
        return 128 + result["signal"]
    written = write_report(settings, store, out)
    signin = signin_of(store, written[2].get("session_id", "")) if written else {}
    store.close()
    msgs: list[dict] = []
    if wecom.ok:
        msgs = wait_for_hr_messages(wecom)
        (out / "wecom-messages.json").write_text(json.dumps(msgs, ensure_ascii=False, indent=2), encoding="utf-8")
    wecom.stop()
    took = time.monotonic() - t0
    print(f"demo: GUI thread max stall {stall.max_stall_ms:.0f} ms over {stall.samples} samples "
          f"({stall.stalls_over_50ms} stalls > 50 ms)")
    if stall.excluded:
        # The demo's own screenshots (QWidget.grab() of the whole window and a PNG save) block
        # the loop on purpose; a kiosk never does that, so those beats are left out above.
        print(f"demo: not counted above: the demo's own screenshots ({stall.excluded} after start-up), "
              f"the longest blocking the GUI thread {stall.excluded_max_ms:.0f} ms (a kiosk takes none)")
    if getattr(stall, "worst", None):
        print("demo: longest stalls: " + ", ".join(f"{ms:.0f} ms in {where}" for ms, where in stall.worst))
    if window.answer_save_s:
        print("demo: answer saved (analysis finished, recording sealed) "
              + ", ".join(f"{x:.2f}" for x in window.answer_save_s) + " s after 'I'm done'")
    if screens_dir is not None:
        print(f"demo: {len(pilot.shots)} screenshots in {screens_dir}")
    summary = {"ok": bool(result["ok"] and written), "signin": {**signin, "tried": pilot.signin_via,
                                                                "qr_read_from": pilot.qr_source},
               "report_json": str(out / "report.json") if written else None,
               "report_html": str(out / "report.html") if written else None,
               "screens": [str(p) for p in pilot.shots],
               "wecom_messages": str(out / "wecom-messages.json") if wecom.fake_root and msgs else None,
               "hr_oncall": list(settings.wecom.hr_oncall)}
    (out / "demo-summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    if signin.get("method"):
        via = {"wecom": f"WeCom (scanned the QR code as {DEMO_WECOM_USER})",
               "code": f"interview code {code}"}.get(signin["method"], signin["method"])
        print(f"demo: the candidate signed in by {via}")
    if msgs:
        print(f"demo: HR ({', '.join(settings.wecom.hr_oncall)}) received {len(msgs)} WeCom message(s): "
              + "; ".join(message_kind(m) for m in msgs))
        print(f"demo: WeCom messages written to {out / 'wecom-messages.json'}")
    elif wecom.failed or not wecom.fake_root:
        print(f"demo: no WeCom messages: {wecom.failed or 'the WeCom service did not start'}")
    else:
        print("demo: HR received no WeCom messages (see " + str(out / "wecom.log") + ")")
    if written is None:
        print(f"demo: FAILED after {took:.0f} s: no result was produced (see the log above)", file=sys.stderr)
        return 1
    print(f"demo: finished in {took:.0f} s")
    print(f"demo: report written to {written[0]} and {written[1]}")
    return 0 if result["ok"] else 1
