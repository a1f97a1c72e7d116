"""The kiosk's look: brand colours, type scale and the Qt style sheet, in one place.

Screens refer to object names (title, card, primary, ...), never to colours, so a
customer's brand colour is one change here. No logic lives here.
"""

from __future__ import annotations

BRAND = "#0F5C8C"        # calm deep blue: the company colour
BRAND_DARK = "#0A4468"
BRAND_LIGHT = "#E3EEF6"
ACCENT = "#16A085"       # ok / go
WARN = "#E09B1E"
DANGER = "#C8453B"
BG = "#F3F5F8"
CARD = "#FFFFFF"
TEXT = "#1C2733"
MUTED = "#5E6B7A"
LINE = "#D9E0E7"

FONT_FAMILY = "WenQuanYi Micro Hei"
MIN_TARGET_PX = 64       # touch targets: at least this tall
MIN_TEXT_PX = 20         # what a candidate must read, at arm's length on a 1280x800 panel


def stylesheet(scale: float = 1.0) -> str:
    """The style sheet; `scale` grows type and spacing for large portrait screens."""

    def px(v: float) -> str:
        return f"{round(v * scale)}px"

    return f"""
    QWidget {{
        font-family: "{FONT_FAMILY}";
        color: {TEXT};
        font-size: {px(22)};
    }}
    QWidget#root {{ background: {BG}; }}
    QFrame#header {{
        background: {CARD};
        border-bottom: 1px solid {LINE};
    }}
    QLabel#company {{ font-size: {px(24)}; font-weight: 600; color: {BRAND_DARK}; }}
    QLabel#site {{ font-size: {px(17)}; color: {MUTED}; }}
    QLabel#clock {{ font-size: {px(20)}; color: {MUTED}; }}
    QFrame#footer {{ background: transparent; }}
    QLabel#footnote {{ font-size: {px(15)}; color: {MUTED}; }}

    QFrame#card {{
        background: {CARD};
        border: 1px solid {LINE};
        border-radius: {px(24)};
    }}
    QFrame#band {{
        background: {BRAND_LIGHT};
        border-radius: {px(18)};
    }}
    QLabel#hero {{ font-size: {px(46)}; font-weight: 700; color: {TEXT}; }}
    QLabel#title {{ font-size: {px(36)}; font-weight: 700; color: {TEXT}; }}
    QLabel#subtitle {{ font-size: {px(24)}; color: {MUTED}; }}
    QLabel#body {{ font-size: {px(22)}; color: {TEXT}; }}
    QLabel#muted {{ font-size: {px(MIN_TEXT_PX)}; color: {MUTED}; }}
    QLabel#question {{ font-size: {px(34)}; font-weight: 600; color: {TEXT}; }}
    QLabel#caption {{
        font-size: {px(20)}; color: {TEXT};
        background: {BG}; border-radius: {px(12)}; padding: {px(12)} {px(16)};
    }}
    QLabel#chip {{
        font-size: {px(MIN_TEXT_PX)}; color: {BRAND_DARK}; background: {BRAND_LIGHT};
        border-radius: {px(14)}; padding: {px(4)} {px(14)};
    }}
    QLabel#recording {{
        font-size: {px(20)}; font-weight: 600; color: white; background: {DANGER};
        border-radius: {px(20)}; padding: {px(6)} {px(18)};
    }}
    QLabel#ok {{ font-size: {px(20)}; color: {ACCENT}; }}
    QLabel#bad {{ font-size: {px(20)}; color: {DANGER}; }}
    QLabel#code {{
        font-size: {px(44)}; font-weight: 600; letter-spacing: {px(10)};
        background: {BG}; border: 2px solid {LINE}; border-radius: {px(16)};
        padding: {px(8)} {px(20)}; color: {TEXT};
    }}
    QLabel#error {{ font-size: {px(20)}; color: {DANGER}; }}

    QPushButton {{
        min-height: {px(MIN_TARGET_PX)};
        border-radius: {px(MIN_TARGET_PX / 2)};
        padding: 0 {px(36)};
        font-size: {px(24)};
        font-weight: 600;
    }}
    QPushButton#primary {{ background: {BRAND}; color: white; border: none; }}
    QPushButton#primary:pressed {{ background: {BRAND_DARK}; }}
    QPushButton#primary:disabled {{ background: #9DB3C4; }}
    QPushButton#secondary {{ background: {CARD}; color: {BRAND}; border: 2px solid {BRAND}; }}
    QPushButton#secondary:pressed {{ background: {BRAND_LIGHT}; }}
    QPushButton#ghost {{ background: transparent; color: {MUTED}; border: 2px solid {LINE}; }}
    QPushButton#ghost:pressed {{ background: {LINE}; }}
    QPushButton#help {{ background: {CARD}; color: {DANGER}; border: 2px solid #E9C3BF; }}
    QPushButton#help:pressed {{ background: #F6DEDB; }}
    QPushButton#lang {{
        min-height: {px(MIN_TARGET_PX)}; min-width: {px(130)}; font-size: {px(20)};
        background: {BG}; color: {BRAND_DARK}; border: 1px solid {LINE};
        border-radius: {px(MIN_TARGET_PX / 2)}; padding: 0 {px(22)};
    }}
    QPushButton#lang:pressed {{ background: {BRAND_LIGHT}; }}
    QPushButton#key {{
        min-height: {px(76)}; min-width: {px(96)}; border-radius: {px(18)};
        background: {CARD}; color: {TEXT}; border: 1px solid {LINE}; font-size: {px(32)};
    }}
    QPushButton#key:pressed {{ background: {BRAND_LIGHT}; }}
    QPushButton#logo {{
        min-height: {px(MIN_TARGET_PX)}; min-width: {px(MIN_TARGET_PX)}; padding: 0;
        border: none; background: transparent;
    }}
    """
