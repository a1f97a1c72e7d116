"""The terminal's full-screen PySide6 UI: screens bound to device/session's state machine.

Only this package imports Qt (through kiosk/qt.py); it decides nothing about the interview.
"""
