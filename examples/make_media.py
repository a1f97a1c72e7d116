"""Draws the example bank's prompt image (a 当心机械伤人 / caution: moving machinery sign) so
the bank ships a real image prompt without any stock photo. Run once; the PNG is committed.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.patches import Circle, Polygon, Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent


def _cjk_font() -> font_manager.FontProperties:
    for name in ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC"):
        try:
            return font_manager.FontProperties(
                fname=font_manager.findfont(name, fallback_to_default=False))
        except ValueError:
            continue
    return font_manager.FontProperties()


def draw_safety_sign(out: Path) -> Path:
    fig = plt.figure(figsize=(6.4, 4.8), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 64)
    ax.set_ylim(0, 48)
    ax.axis("off")
    ax.add_patch(Rectangle((0, 0), 64, 48, color="white"))
    # GB 2894 warning sign: yellow triangle, black border, pictogram, text panel below
    ax.add_patch(Polygon([(32, 45), (14, 14), (50, 14)], closed=True, fc="#ffd200", ec="black", lw=6))
    for cx, cy, r, phase in ((28.3, 24, 3.8, 0.0), (36.2, 24, 3.8, math.pi / 8)):  # meshing gears
        ax.add_patch(Circle((cx, cy), r, fc="black"))
        for k in range(8):
            a = phase + k * math.pi / 4
            da = 0.22
            ax.add_patch(Polygon([(cx + r * 0.9 * math.cos(a - da), cy + r * 0.9 * math.sin(a - da)),
                                  (cx + (r + 1.3) * math.cos(a - da * 0.6), cy + (r + 1.3) * math.sin(a - da * 0.6)),
                                  (cx + (r + 1.3) * math.cos(a + da * 0.6), cy + (r + 1.3) * math.sin(a + da * 0.6)),
                                  (cx + r * 0.9 * math.cos(a + da), cy + r * 0.9 * math.sin(a + da))],
                                 closed=True, fc="black"))
        ax.add_patch(Circle((cx, cy), 1.2, fc="#ffd200"))
    ax.add_patch(Polygon([(30, 33), (34, 33), (33, 28), (31, 28)], closed=True, fc="black"))  # hand
    ax.add_patch(Rectangle((8, 1.5), 48, 10, fc="white", ec="black", lw=2))
    font = _cjk_font()
    ax.text(32, 8.2, "当心机械伤人", ha="center", va="center", fontsize=26, fontproperties=font,
            weight="bold")
    ax.text(32, 3.6, "CAUTION: MOVING MACHINERY", ha="center", va="center", fontsize=13)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw_safety_sign(HERE / "media" / "safety_sign.png"))
