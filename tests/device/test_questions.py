"""Question banks: the example bank in JSON and Excel, every kind of import error named where it
is, the last good bank staying installed, and question plans for one interview."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from device.questions import (
    BankError,
    QuestionBank,
    bank_from_dict,
    bank_media_root,
    bank_to_json,
    current_bank,
    install_bank,
    load_bank,
    load_bank_json,
    load_bank_xlsx,
    plan_questions,
    prompt_media_path,
    write_bank_xlsx,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BANK_JSON = EXAMPLES / "question_bank.json"
BANK_XLSX = EXAMPLES / "question_bank.xlsx"


@pytest.fixture(scope="module")
def bank() -> QuestionBank:
    return load_bank_json(BANK_JSON)


@pytest.fixture(scope="module")
def bank_data() -> dict[str, Any]:
    return json.loads(BANK_JSON.read_text(encoding="utf-8"))


def _copy_media(dest: Path) -> None:
    shutil.copytree(EXAMPLES / "media", dest / "media", dirs_exist_ok=True)


def _broken_xlsx(tmp_path: Path, edit) -> Path:
    """The example workbook with `edit(workbook)` applied, next to a copy of its media."""
    _copy_media(tmp_path)
    wb = load_workbook(BANK_XLSX)
    edit(wb)
    out = tmp_path / "broken.xlsx"
    wb.save(out)
    return out


def _row_of(ws, value: str, column: int = 1) -> int:
    for row in ws.iter_rows(min_row=2):
        if row[column - 1].value == value:
            return row[0].row
    raise AssertionError(f"{value!r} not on sheet {ws.title}")


def _errors(path_or_data: Any) -> list[str]:
    with pytest.raises(BankError) as exc:
        if isinstance(path_or_data, Path):
            load_bank(path_or_data)
        else:
            bank_from_dict(path_or_data)
    return [str(e) for e in exc.value.errors]


def _json_errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(BankError) as exc:
        bank_from_dict(data, media_root=EXAMPLES)
    return [str(e) for e in exc.value.errors]


# --- the example bank ------------------------------------------------------------------------


def test_example_json_and_xlsx_load_to_the_same_bank(bank: QuestionBank) -> None:
    assert load_bank_xlsx(BANK_XLSX) == bank
    assert load_bank(BANK_XLSX) == load_bank(BANK_JSON)


def test_example_bank_has_three_bilingual_jobs_with_five_or_more_questions(bank: QuestionBank) -> None:
    titles = {j.id: (j.title.zh, j.title.en) for j in bank.jobs}
    assert titles["sales_rep"][0] == "销售代表"
    assert titles["software_engineer"][0] == "软件工程师"
    assert titles["line_operator"][0] == "产线操作员"
    for job in bank.jobs:
        assert len(set(job.plan.questions)) >= 5
        for qid in job.plan.questions:
            q = bank.question(qid)
            assert q.prompt.zh and q.prompt.en
            assert 10 <= q.preparation_s <= 30 and 60 <= q.answer_s <= 120
            assert (q.language or job.language) == job.language
            assert q.rubric.keywords_for(job.language), f"{qid} has no keywords in {job.language}"
            assert all(k.synonyms for k in q.rubric.keywords), f"{qid}: every keyword has synonyms"
    assert bank.job("software_engineer").language == "en"
    assert {j.language for j in bank.jobs} == {"zh", "en"}
    assert bank.job("line_operator").nonverbal_weight == 0.0
    assert any(q.media.kind == "image" for q in bank.questions)


def test_written_workbook_reads_back_to_the_same_bank(bank: QuestionBank, tmp_path: Path) -> None:
    _copy_media(tmp_path)
    out = write_bank_xlsx(bank, tmp_path / "again.xlsx")
    assert load_bank_xlsx(out) == bank
    assert "说明 help" in load_workbook(out).sheetnames  # HR gets the filling-in instructions


def test_json_round_trip(bank: QuestionBank, tmp_path: Path) -> None:
    _copy_media(tmp_path)
    out = tmp_path / "bank.json"
    out.write_text(bank_to_json(bank), encoding="utf-8")
    assert load_bank_json(out) == bank


def test_xlsx_columns_may_be_reordered_and_words_given_in_chinese(tmp_path: Path, bank: QuestionBank) -> None:
    def edit(wb) -> None:
        ws = wb["jobs"]
        ws.move_range("D1:D4", cols=20)  # language column moved to the far right
        ws["X2"] = "中文"
        ws["J2"] = "随机"

    assert load_bank_xlsx(_broken_xlsx(tmp_path, edit)) == bank


def test_xlsx_takes_dimension_names_percentages_and_units(tmp_path: Path, bank: QuestionBank) -> None:
    rows = {}

    def edit(wb) -> None:
        wb["jobs"]["E2"] = "沟通表达：30%，客户导向：30%，抗压与韧性：20%，Drive for results：20%"
        ws = wb["questions"]
        rows["r"] = _row_of(ws, "sales-01")
        ws.cell(rows["r"], 6).value = "15秒"
        ws.cell(rows["r"], 7).value = "1分钟"

    assert load_bank_xlsx(_broken_xlsx(tmp_path, edit)) == bank


def test_retakes_left_empty_means_the_terminal_setting(tmp_path: Path, bank_data: dict[str, Any]) -> None:
    """No per-question retakes (empty cell, absent JSON key) is None, which the session reads as
    the device's session.max_retakes; an explicit 0 stays 0 (no retake for that question)."""
    def edit(wb) -> None:
        ws = wb["questions"]
        col = next(c.column for c in ws[1] if str(c.value).startswith("retakes"))
        ws.cell(_row_of(ws, "sales-01"), col).value = None
        ws.cell(_row_of(ws, "sales-02"), col).value = 0

    from_xlsx = load_bank_xlsx(_broken_xlsx(tmp_path, edit))
    assert from_xlsx.question("sales-01").retakes is None
    assert from_xlsx.question("sales-02").retakes == 0
    assert from_xlsx.question("sales-03").retakes == 1
    again = write_bank_xlsx(from_xlsx, tmp_path / "again.xlsx")  # the empty cell is written back empty
    assert load_bank_xlsx(again) == from_xlsx
    data = json.loads(json.dumps(bank_data))
    del data["questions"][0]["retakes"]
    from_json = bank_from_dict(data, media_root=EXAMPLES)
    assert from_json.questions[0].retakes is None
    out = tmp_path / "bank.json"
    out.write_text(bank_to_json(from_json), encoding="utf-8")
    assert load_bank_json(out).questions[0].retakes is None


# --- Excel errors: each names sheet, row and column --------------------------------------------


def test_missing_sheet_is_named(tmp_path: Path) -> None:
    path = _broken_xlsx(tmp_path, lambda wb: wb.remove(wb["questions"]))
    errors = _errors(path)
    assert any(e.startswith("sheet 'questions': sheet 'questions' is missing") for e in errors)


def test_wrong_type_in_a_cell_names_sheet_row_and_column(tmp_path: Path) -> None:
    rows = {}

    def edit(wb) -> None:
        ws = wb["questions"]
        rows["r"] = _row_of(ws, "swe-03")
        ws.cell(rows["r"], 7).value = "ninety"

    errors = _errors(_broken_xlsx(tmp_path, edit))
    assert errors == [f"sheet 'questions', row {rows['r']}, column G (answer_s 作答时间（秒）): "
                      "expected a whole number, got 'ninety'"]


def test_weights_not_summing_to_one_are_named(tmp_path: Path) -> None:
    def edit(wb) -> None:
        wb["jobs"]["E3"] = "problem_solving: 0.35, technical_depth: 0.15, teamwork: 0.2, learning_agility: 0.2"

    errors = _errors(_broken_xlsx(tmp_path, edit))
    assert "sheet 'jobs', row 3, column E (competencies 能力模型): weights sum to 0.9, expected 1.0" in errors


def test_unknown_question_in_plan_is_named(tmp_path: Path) -> None:
    def edit(wb) -> None:
        wb["jobs"]["G2"] = "sales-01, sales-02, sales-03, sales-04, sales-05, sales-99"

    errors = _errors(_broken_xlsx(tmp_path, edit))
    assert errors == ["sheet 'jobs', row 2, column G (questions 题目编号): unknown question 'sales-99'"]


def test_duplicate_question_id_is_named_on_both_rows(tmp_path: Path) -> None:
    rows = {}

    def edit(wb) -> None:
        ws = wb["questions"]
        rows["a"], rows["b"] = _row_of(ws, "op-05"), _row_of(ws, "op-06")
        ws.cell(rows["b"], 1).value = "op-05"

    errors = _errors(_broken_xlsx(tmp_path, edit))
    for r in (rows["a"], rows["b"]):
        assert (f"sheet 'questions', row {r}, column A (id 题目编号): duplicate question id 'op-05'; "
                "ids must be unique") in errors


def test_missing_column_and_bad_words_are_all_collected(tmp_path: Path) -> None:
    def edit(wb) -> None:
        wb["questions"]["H1"] = None  # retakes column header deleted
        wb["keywords"]["B5"] = "French"
        wb["jobs"]["J3"] = "alphabetical"
        wb["bank"]["B2"] = "v2"

    with pytest.raises(BankError) as exc:
        load_bank(_broken_xlsx(tmp_path, edit))
    text = str(exc.value)
    assert "column 'retakes 可重答次数' is missing" in text
    assert "sheet 'keywords', row 5, column B (language 语言): language 'French' is not one of en, zh" in text
    assert "sheet 'jobs', row 3, column J (order 出题顺序): order 'alphabetical' is not one of fixed, shuffled" in text
    assert "sheet 'bank', row 2, column B (value 值): version: expected a whole number, got 'v2'" in text
    assert text.splitlines()[0].endswith("4 problems")
    assert all(line.startswith("  - sheet '") for line in text.splitlines()[1:])


def test_keyword_for_unknown_question_and_missing_media_are_named(tmp_path: Path) -> None:
    def edit(wb) -> None:
        wb["keywords"]["A2"] = "sales-1"

    path = _broken_xlsx(tmp_path, edit)
    (tmp_path / "media" / "safety_sign.png").unlink()
    errors = _errors(path)
    assert "sheet 'keywords', row 2, column A (question_id 题目编号): unknown question 'sales-1' (not on sheet 'questions')" in errors
    assert any(e.startswith("sheet 'questions', row 15, column K (media_path 媒体文件): file not found: media/safety_sign.png")
               for e in errors)


def test_not_a_workbook_is_a_bank_error(tmp_path: Path) -> None:
    bad = tmp_path / "bank.xlsx"
    bad.write_bytes(BANK_XLSX.read_bytes()[:3000])  # a USB copy cut short
    assert len(_errors(bad)) == 1
    with pytest.raises(BankError, match="use .xlsx or .json"):
        load_bank(tmp_path / "bank.csv")


# --- JSON errors: each names its path ---------------------------------------------------------


def test_json_weights_error_names_the_path(bank_data: dict[str, Any]) -> None:
    data = copy.deepcopy(bank_data)
    data["jobs"][1]["competencies"]["problem_solving"] = 0.25
    assert _json_errors(data) == ["jobs[1].competencies: weights sum to 0.9, expected 1.0"]


def test_json_collects_every_problem(bank_data: dict[str, Any]) -> None:
    data = copy.deepcopy(bank_data)
    data["version"] = "latest"
    data["jobs"][0]["plan"]["questions"].append("sales-99")
    data["jobs"][2]["plan"]["required"] = ["op-01", "op-07"]
    data["jobs"][2]["plan"]["count"] = 7
    data["questions"][3]["answer_s"] = 5
    data["questions"][4]["id"] = "sales-01"
    data["questions"][6]["color"] = "blue"
    errors = _json_errors(data)
    assert "version: expected a whole number, got 'latest'" in errors
    assert "jobs[0].plan.questions: unknown question 'sales-99'" in errors
    assert "jobs[2].plan.required: required question 'op-07' is not in the job's question list" in errors
    assert "jobs[2].plan.count: asks 7 questions but only 6 are listed" in errors
    assert "questions[3].answer_s: expected greater than or equal to 10, got 5" in errors
    assert "questions[0].id: duplicate question id 'sales-01'; ids must be unique" in errors
    assert "questions[4].id: duplicate question id 'sales-01'; ids must be unique" in errors
    assert "questions[6].color: unknown field (check the spelling)" in errors


def test_json_cross_checks_between_jobs_and_questions(bank_data: dict[str, Any]) -> None:
    data = copy.deepcopy(bank_data)
    swe3 = next(q for q in data["questions"] if q["id"] == "swe-03")
    swe3["dimensions"] = {"teamwork": 0.7, "safety_awareness": 0.3}  # not in the engineer's model
    swe3["language"] = "zh"
    op6 = next(q for q in data["questions"] if q["id"] == "op-06")
    for k in op6["rubric"]["keywords"]:
        k["language"] = "en"
    data["jobs"][0]["competencies"] = {"communication": 0.5, "customer_focus": 0.3, "leadership": 0.2}
    errors = _json_errors(data)
    i3 = data["questions"].index(swe3)
    i6 = data["questions"].index(op6)
    assert (f"questions[{i3}].dimensions: dimension 'safety_awareness' is not in the competency model "
            "of job 'software_engineer', which asks this question") in errors
    assert (f"questions[{i3}].language: answers must be in 'zh' but job 'software_engineer', which "
            "asks this question, is answered in 'en'") in errors
    assert (f"questions[{i6}].rubric.keywords: question 'op-06' has keywords, but none in 'zh', the "
            "language job 'line_operator' is answered in") in errors
    assert "jobs[0].competencies: dimension 'leadership' is not declared in the bank's dimensions" in errors
    assert ("jobs[0].competencies: dimension 'leadership' has weight 0.2 but no listed question "
            "measures it") in errors


def test_invalid_json_text_is_a_bank_error(tmp_path: Path) -> None:
    path = tmp_path / "bank.json"
    path.write_text('{"version": 2, "jobs": [', encoding="utf-8")
    errors = _errors(path)
    assert len(errors) == 1 and errors[0].startswith("(whole file): not valid JSON")
    assert _errors([1, 2, 3])[0].startswith("(whole file): expected a JSON object")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _containers(node: Any, out: list) -> list:
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            _containers(v, out)
    elif isinstance(node, list):
        out.append(node)
        for v in node:
            _containers(v, out)
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_of_a_valid_bank_loads_or_raises_bank_error(bank_data: dict[str, Any], data) -> None:
    doc = copy.deepcopy(bank_data)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        nodes = _containers(doc, [])
        node = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        if isinstance(node, dict):
            keys = list(node)
            if action == "add" or not keys:
                node[data.draw(st.text(max_size=8), label="key")] = data.draw(_json_values, label="value")
            else:
                key = data.draw(st.sampled_from(keys), label="key")
                if action == "delete":
                    del node[key]
                else:
                    node[key] = data.draw(_json_values, label="value")
        else:
            if action == "add" or not node:
                node.append(data.draw(_json_values, label="value"))
            else:
                i = data.draw(st.integers(0, len(node) - 1), label="index")
                if action == "delete":
                    node.pop(i)
                else:
                    node[i] = data.draw(_json_values, label="value")
    try:
        result = bank_from_dict(doc, media_root=EXAMPLES)
    except BankError as e:
        assert e.errors and all(str(issue) for issue in e.errors)
        assert str(e).count("\n") == len(e.errors)
    else:
        assert isinstance(result, QuestionBank)


# --- the store --------------------------------------------------------------------------------


def test_install_and_read_back(store, bank: QuestionBank) -> None:
    assert current_bank(store) is None
    install_bank(store, bank)
    assert current_bank(store) == bank


def test_last_good_bank_stays_installed_when_a_bad_one_is_imported(store, bank: QuestionBank,
                                                                   tmp_path: Path) -> None:
    install_bank(store, bank)

    def edit(wb) -> None:
        wb["bank"]["B2"] = 2
        wb["questions"]["F3"] = -5

    with pytest.raises(BankError):
        install_bank(store, load_bank(_broken_xlsx(tmp_path, edit)))
    # a bank that skipped validation (model_construct) is re-checked before it is stored
    sneaky = bank.model_copy(update={"version": 3, "jobs": ()})
    with pytest.raises(BankError, match="jobs"):
        install_bank(store, sneaky)
    assert current_bank(store) == bank


def test_only_a_newer_version_replaces_the_installed_bank(store, bank: QuestionBank) -> None:
    install_bank(store, bank.model_copy(update={"version": 5}))
    with pytest.raises(BankError, match="version 5 is not newer than the installed version 5"):
        install_bank(store, bank.model_copy(update={"version": 5, "name": "other"}))
    with pytest.raises(BankError, match="version 4 is not newer"):
        install_bank(store, bank.model_copy(update={"version": 4}))
    assert current_bank(store).name == bank.name
    install_bank(store, bank.model_copy(update={"version": 6, "name": "六"}))
    assert current_bank(store).version == 6 and current_bank(store).name == "六"


# --- plans ------------------------------------------------------------------------------------


def test_plan_puts_required_first_and_is_deterministic_by_seed(bank: QuestionBank) -> None:
    job = bank.job("sales_rep")
    plans = {tuple(q.id for q in plan_questions(bank, "sales_rep", seed)) for seed in range(30)}
    for plan in plans:
        assert len(plan) == job.plan.count == len(set(plan))
        assert plan[0] == "sales-01"
        assert set(plan) <= set(job.plan.questions)
    assert len(plans) > 3  # shuffled: different interviews draw different questions
    assert plan_questions(bank, "sales_rep", "s-1") == plan_questions(bank, "sales_rep", "s-1")


def test_fixed_plan_asks_the_listed_order(bank: QuestionBank, bank_data: dict[str, Any]) -> None:
    assert [q.id for q in plan_questions(bank, "line_operator", 7)] == list(
        bank.job("line_operator").plan.questions)
    data = copy.deepcopy(bank_data)
    data["jobs"][1]["plan"].update(order="fixed", required=["swe-04"], count=3)
    fixed = bank_from_dict(data, media_root=EXAMPLES)
    assert [q.id for q in plan_questions(fixed, "software_engineer", 1)] == ["swe-04", "swe-01", "swe-02"]
    with pytest.raises(KeyError, match="no job 'cashier'"):
        plan_questions(bank, "cashier", 1)


def test_sample_answers_fit_their_questions(bank: QuestionBank) -> None:
    """The demo speaks these: each English one is 20-40 s of speech (at ~150 words a minute) and
    mentions most of its rubric, so a working analysis scores it well."""
    answers = json.loads((EXAMPLES / "sample_answers.json").read_text(encoding="utf-8"))["answers"]
    assert {q for q in bank.job("software_engineer").plan.questions} <= set(answers)
    for qid, answer in answers.items():
        q = bank.question(qid)
        text = answer["text"].lower()
        assert answer["language"] == q.language
        if q.language == "en":
            assert 50 <= len(text.split()) <= 100, qid
        keywords = q.rubric.keywords_for(q.language)
        hit = [k for k in keywords if any(t.lower() in text for t in (k.term, *k.synonyms))]
        assert len(hit) >= 0.6 * len(keywords), (qid, [k.term for k in keywords if k not in hit])


def test_install_copies_prompt_media_off_the_usb_stick(store, bank: QuestionBank, tmp_path: Path) -> None:
    stick = tmp_path / "usb"
    _copy_media(stick)
    media_root = bank_media_root(tmp_path / "var")
    install_bank(store, bank, media_from=stick, media_root=media_root)
    q = bank.question("op-02")
    copied = prompt_media_path(media_root, q)
    assert copied == tmp_path / "var" / "bank-media" / "media" / "safety_sign.png"
    assert copied.read_bytes() == (EXAMPLES / "media" / "safety_sign.png").read_bytes()
    assert prompt_media_path(media_root, bank.question("op-01")) is None
    # a newer bank whose image is missing from the stick is refused before anything changes
    (stick / "media" / "safety_sign.png").unlink()
    with pytest.raises(BankError, match=r"questions\[13\]\.media\.path: file not found"):
        install_bank(store, bank.model_copy(update={"version": 2}), media_from=stick, media_root=media_root)
    assert current_bank(store).version == 1 and copied.is_file()


@pytest.mark.parametrize("bad", ["../../etc/passwd.png", "/etc/x.png", "C:/x.png", "media/../../x.png"])
def test_media_paths_cannot_leave_the_bank_folder(bank_data: dict[str, Any], bad: str) -> None:
    data = copy.deepcopy(bank_data)
    data["questions"][13]["media"]["path"] = bad
    errors = _json_errors(data)
    assert errors == [f"questions[13].media: {bad!r} must be a path relative to the bank file, "
                      "without '..' (e.g. media/sign.png)"]


_cell_values = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)
                | st.sampled_from(["zh", "en", "fixed", "image", "sales-01", "teamwork: 1", "0.5"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_cell_edit_of_a_valid_workbook_loads_or_raises_bank_error(tmp_path: Path, data) -> None:
    _copy_media(tmp_path)
    wb = load_workbook(BANK_XLSX)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        ws = wb[data.draw(st.sampled_from(["bank", "dimensions", "jobs", "questions", "keywords"]), label="sheet")]
        row = data.draw(st.integers(1, ws.max_row + 1), label="row")
        col = data.draw(st.integers(1, ws.max_column + 1), label="column")
        ws.cell(row, col).value = data.draw(_cell_values, label="value")
    path = tmp_path / "edited.xlsx"
    wb.save(path)
    try:
        result = load_bank_xlsx(path)
    except BankError as e:
        assert e.errors and all(i.sheet or i.path is not None for i in e.errors)
    else:
        assert isinstance(result, QuestionBank)
