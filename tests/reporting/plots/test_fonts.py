"""CJK class names must come out as glyphs: a 'Glyph ... missing' warning fails the test."""

import subprocess
import sys
import warnings

from foldertune.reporting.plots.common import new_figure, save
from foldertune.reporting.plots.fonts import needs_cjk, use_fonts_for

LABELS = ["鱼", "纪念碑", "工具 箱", "ひらがな", "한국어", "fish"]


def test_needs_cjk_only_for_cjk_scripts():
    assert needs_cjk(["鱼"]) and needs_cjk(["カタカナ"]) and needs_cjk(["한국어"]) and needs_cjk(["ａｂｃ"])
    assert not needs_cjk(["fish", "Éoliennes", "рыба", "ψάρι", "🐟"])


def test_chinese_japanese_korean_labels_render_without_missing_glyphs(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, ax = new_figure(labels=LABELS, size=(6, 3))
        ax.bar(range(len(LABELS)), range(1, len(LABELS) + 1))
        ax.set_xticks(range(len(LABELS)), LABELS)
        ax.set_title("标题: 类别")
        path = save(fig, tmp_path / "cjk", fmt="png")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []
    assert use_fonts_for(LABELS) is not None  # a CJK family was found or registered
    assert path.stat().st_size > 5000


def test_with_no_cjk_font_anywhere_one_warning_names_the_fix():
    code = """
import sys, warnings
sys.modules["mplfonts"] = None  # as if the optional extra were not installed
import foldertune.reporting.plots.fonts as fonts
fonts.CJK_FAMILIES = ()  # and no CJK font on the system
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert fonts.use_fonts_for(["鱼"]) is None
    assert fonts.use_fonts_for(["纪念碑"]) is None
print(len(caught), caught[0].message)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    count, message = done.stdout.split(" ", 1)
    assert count == "1" and "pip install 'foldertune[cjk]'" in message and "fonts-noto-cjk" in message
