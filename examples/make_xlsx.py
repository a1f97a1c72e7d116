"""Generates examples/question_bank.xlsx from examples/question_bank.json, so the two example
banks cannot drift (a test loads both and compares). Never edit the xlsx by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from device.questions import BankError, load_bank_json, write_bank_xlsx

HERE = Path(__file__).resolve().parent


def main() -> int:
    try:
        bank = load_bank_json(HERE / "question_bank.json")
    except BankError as e:
        print(e, file=sys.stderr)
        return 1
    print(write_bank_xlsx(bank, HERE / "question_bank.xlsx"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
