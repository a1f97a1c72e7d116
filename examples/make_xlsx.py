"""Generates examples/question_bank.xlsx and examples/roster.xlsx from their JSON sources, so
the example files cannot drift (tests load both forms and compare). Never edit the xlsx by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from device.questions import BankError, load_bank_json, write_bank_xlsx
from device.roster import RosterError, load_roster, write_roster_xlsx

HERE = Path(__file__).resolve().parent


def main() -> int:
    try:
        bank = load_bank_json(HERE / "question_bank.json")
        roster = load_roster(HERE / "roster.json")
    except (BankError, RosterError) as e:
        print(e, file=sys.stderr)
        return 1
    print(write_bank_xlsx(bank, HERE / "question_bank.xlsx"))
    print(write_roster_xlsx(roster, HERE / "roster.xlsx"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
