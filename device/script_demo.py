"""A scripted interview through the real state machine and an encrypted store, in the terminal:
a synthetic candidate, canned answers, then the stored result JSON on stdout. A console
fallback for the demo and a quick check for technicians.

It always works in a scratch data directory with its own keys, so it never queues anything
for delivery from a real device's store; it never uses a real candidate's data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from device.config import ConfigError, PathsSection, Settings, default_config_text, load_settings
from device.keys import create_master_key
from device.questions import BankError, install_bank, load_bank
from device.roster import RosterEntry
from device.session import (
    AnswerFinished,
    ConsentGiven,
    DeviceCheckPassed,
    NextQuestion,
    Retake,
    SessionMachine,
    SessionView,
    SignInStarted,
    StartAnswer,
    State,
    Verified,
)
from device.store import Store

EXAMPLE_BANK = Path(__file__).resolve().parents[1] / "examples" / "question_bank.json"
DEMO_NAME = {"zh": "王小明", "en": "Alex Morgan"}  # synthetic


def canned_answer(question: Any, language: str) -> str:
    """A STAR-shaped answer that mentions the rubric's first keywords, in the job's language."""
    words = [k.term for k in question.rubric.keywords_for(language)][:3]
    if language == "en":
        said = ", ".join(words) or "the customer"
        return (
            "In my last job our team missed a delivery deadline. My task was to fix the plan. "
            f"I focused on {said}, talked to everyone involved and split the work into daily "
            "goals. As a result we delivered one week early and the customer renewed the contract."
        )
    said = "、".join(words) or "客户"
    return (
        "在上一份工作中，我们团队遇到了交付延期的问题。我的任务是重新安排计划。"
        f"我重点关注了{said}，和每个人沟通，把工作拆成每天的小目标。"
        "结果我们提前一周完成，客户也续签了合同。"
    )


def scratch_settings(config: Path | None, data_dir: Path) -> Settings:
    """The device's settings (timeouts, ids) with the data directory moved to scratch."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config is None:
        config = data_dir / "config.toml"
        if not config.exists():
            config.write_text(default_config_text(data_dir, "demo-kiosk"), encoding="utf-8")
    settings = load_settings(config)
    settings = settings.model_copy(update={"paths": PathsSection(data_dir=data_dir)})
    if not (settings.paths.key_dir / "master.key").exists():
        create_master_key(settings.paths.key_dir)
    return settings


def run(settings: Settings, bank_path: Path, job_id: str | None, out=sys.stderr) -> dict:
    """Run one scripted interview; returns the stored result record."""
    bank = load_bank(bank_path)
    job = bank.job(job_id) if job_id else bank.jobs[0]
    lang = job.language
    t = [time.time()]  # a fake clock: the script never waits

    def clock() -> float:
        return t[0]

    def wait(seconds: float) -> None:
        t[0] += seconds
        machine.tick()

    def show(view: SessionView) -> None:
        key = (view.state, view.index, view.attempt)
        if key == last[0]:
            return  # a countdown second, not a new screen
        last[0] = key
        if view.state in (State.PREPARE, State.ANSWER, State.REVIEW) and view.question is not None:
            print(f"  [{view.state:<12}] {view.index + 1}/{view.total} (attempt {view.attempt}) "
                  f"{view.question.prompt.text(lang)}", file=out)
        else:
            extra = f" · {view.candidate_name}" if view.candidate_name else ""
            print(f"  [{view.state:<12}]{extra}", file=out)

    last: list[tuple] = [()]
    print(f"Scripted interview: {job.title.text(lang)} ({job.id}), answers in {lang}", file=out)
    with Store.open_from_settings(settings, clock=clock) as store:
        try:
            install_bank(store, bank)
        except BankError:
            pass  # the scratch store already has this version
        machine = SessionMachine(store, settings, clock=clock)
        machine.subscribe(show)
        machine.recover()
        now = datetime.fromtimestamp(t[0], UTC)
        entry = RosterEntry(
            entry_id=f"DEMO-{int(t[0])}", name=DEMO_NAME[lang], interview_code="DEMO2026",
            job_id=job.id, device_id=settings.device.id,
            slot_start=now - timedelta(minutes=30), slot_end=now + timedelta(hours=2),
        )
        machine.handle(SignInStarted("code"))
        machine.handle(Verified(entry, job.id, "code", None))
        if machine.state is not State.WELCOME:
            raise SystemExit(f"sign-in did not start an interview (state {machine.state})")
        wait(8)
        machine.handle(ConsentGiven())
        wait(4)
        machine.handle(DeviceCheckPassed())
        retaken = False
        while machine.state in (State.PREPARE, State.ANSWER, State.REVIEW):
            view = machine.view
            if machine.state is State.PREPARE:
                wait(view.remaining_s or 0)  # let the countdown start the answer by itself
            answer_s = min(35.0, float(view.question.answer_s) - 1)
            wait(answer_s)
            text = canned_answer(view.question, lang)
            if not retaken and view.retakes_left > 0:
                machine.handle(AnswerFinished(text[: len(text) // 3], {"demo": True}, [], answer_s))
                wait(3)
                machine.handle(Retake())
                retaken = True
                wait(2)
                machine.handle(StartAnswer())
                wait(answer_s)
            machine.handle(AnswerFinished(text, {"demo": True}, [], answer_s))
            wait(5)
            machine.handle(NextQuestion())
        if machine.state is not State.DONE:
            raise SystemExit(f"the interview did not finish (state {machine.state})")
        with store.lock:
            (record,) = store.db.execute(
                "SELECT r.record FROM results r JOIN sessions s ON s.id = r.session_id"
                " WHERE s.candidate_ref = ?", (entry.entry_id,)).fetchone()
            queued = store.db.execute(
                "SELECT kind, count(*) FROM outbox WHERE session_id = ("
                " SELECT id FROM sessions WHERE candidate_ref = ?) GROUP BY kind ORDER BY kind",
                (entry.entry_id,)).fetchall()
        print("Queued for delivery: " + ", ".join(f"{k} × {n}" for k, n in queued), file=out)
        return json.loads(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m device.script_demo",
        description="Run a scripted interview through the session state machine and print "
        "the stored result. Works in a scratch data directory: nothing is queued on the device.",
    )
    parser.add_argument("--config", type=Path, help="a device config to take ids and timeouts from")
    parser.add_argument("--data-dir", type=Path,
                        help="scratch data directory (default: a new temporary one)")
    parser.add_argument("--bank", type=Path, default=EXAMPLE_BANK,
                        help="question bank JSON or xlsx (default: the example bank)")
    parser.add_argument("--job", help="job id (default: the bank's first job)")
    args = parser.parse_args(argv)
    try:
        if args.data_dir is None:
            with tempfile.TemporaryDirectory(prefix="kiosk-script-demo-") as tmp:
                record = run(scratch_settings(args.config, Path(tmp)), args.bank, args.job)
        else:
            record = run(scratch_settings(args.config, args.data_dir), args.bank, args.job)
            print(f"Kept in the encrypted store under {args.data_dir}", file=sys.stderr)
    except (ConfigError, BankError) as e:
        print(e, file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"{args.bank}: {e.args[0]}", file=sys.stderr)
        return 2
    json.dump(record, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
