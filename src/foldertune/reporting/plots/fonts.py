"""Fonts for plots: Chinese, Japanese and Korean class names drawn as glyphs, never as empty boxes.

    family = use_fonts_for(["鱼", "tools"])   # 'Noto Sans CJK SC' (or None when every label is Latin)

Where labels need them, a CJK-capable font is looked for among the installed fonts (Noto CJK, Source Han,
WenQuanYi, SimHei, Microsoft YaHei, PingFang, ...), then in the optional extra `foldertune[cjk]` (the PyPI
package mplfonts, which ships Noto Sans CJK SC). It is added after DejaVu Sans in matplotlib's font list, so
Latin text keeps its usual look and each CJK glyph falls back to the CJK font. With no such font anywhere, one
warning says exactly how to install one. Characters that no font in use can draw (emoji, say) get one warning naming
the labels that hold them, instead of matplotlib's warning per glyph and figure.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import cache

import matplotlib
from matplotlib import font_manager

# Installed families that cover CJK, best first (names as matplotlib's font manager reports them).
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "Arial Unicode MS",
)
EXTRA_FONT = ("mplfonts", "fonts/NotoSansCJKsc-Regular.otf")  # package, file inside it
BASE_FAMILY = "DejaVu Sans"  # matplotlib's own default, always present
FIX = (
    "install one with `pip install 'foldertune[cjk]'` (or the system's Noto CJK fonts, e.g. "
    "`apt install fonts-noto-cjk`), then run `foldertune plot RUN` again"
)

# Unicode blocks written with CJK glyphs: CJK ideographs and their extensions, kana, hangul, CJK punctuation
# and full-width forms.
_CJK_RANGES = (
    (0x2E80, 0x2FDF),
    (0x3000, 0x30FF),
    (0x3100, 0x31FF),
    (0x3200, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7FF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
    (0x20000, 0x3FFFF),
)


def needs_cjk(texts: Iterable[str]) -> bool:
    """True when any text holds a character that only a CJK font draws."""
    return any(any(low <= ord(ch) <= high for ch in text for low, high in _CJK_RANGES) for text in texts)


def use_fonts_for(texts: Iterable[str]) -> str | None:
    """Make matplotlib able to draw `texts`; the CJK family used, or None when none is needed or none exists."""
    texts = list(texts)
    cjk = needs_cjk(texts)
    family = cjk_family() if cjk else None
    if cjk and family is None:
        _warn_once()  # which font to install; the characters are not named again below
        _WARNED.update(ch for text in texts for ch in text if needs_cjk(ch))
    if family is not None:
        matplotlib.rcParams["font.family"] = [BASE_FAMILY, family]
    _warn_missing(texts, drawable((BASE_FAMILY, family)))
    return family


@cache
def drawable(families: tuple[str | None, ...]) -> frozenset[str]:
    """Every character the fonts of `families` have a glyph for."""
    from matplotlib.ft2font import FT2Font

    characters: set[str] = set()
    for family in families:
        if family is not None:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            characters.update(chr(code) for code in FT2Font(path).get_charmap())
    return frozenset(characters)


_WARNED: set[str] = set()  # characters already named in a warning: one warning per character and process


def _warn_missing(texts: list[str], fonts_draw: frozenset[str]) -> None:
    missing = {ch for text in texts for ch in text if not ch.isspace() and ch not in fonts_draw} - _WARNED
    if not missing:
        return
    _WARNED.update(missing)
    lines = {line for text in texts for line in text.splitlines()}  # a caption's line, not the whole caption
    holding = sorted({line for line in lines if missing & set(line)}, key=len)
    shown = ", ".join(repr(text) for text in holding[:5]) + (
        f" and {len(holding) - 5} more" if len(holding) > 5 else ""
    )
    warnings.warn(f"no installed font draws every character of {shown}; figures show those characters as boxes.",
                  stacklevel=3)  # fmt: skip


@cache
def cjk_family() -> str | None:
    """The best installed CJK family, else the one the optional extra ships (registered on first use)."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in installed:
            return family
    return _register_extra_font()


def _register_extra_font() -> str | None:
    from importlib import resources

    package, member = EXTRA_FONT
    try:
        path = resources.files(package).joinpath(member)
    except ModuleNotFoundError:
        return None
    if not path.is_file():
        return None
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


@cache
def _warn_once() -> None:
    warnings.warn(f"class names hold Chinese, Japanese or Korean characters but no CJK font was found: {FIX}.",
                  stacklevel=3)  # fmt: skip


def font_file_for(texts: Iterable[str]) -> str:
    """A font file that draws `texts` (for Pillow): the CJK font where needed, else matplotlib's DejaVu Sans."""
    family = cjk_family() if needs_cjk(list(texts)) else None
    if needs_cjk(list(texts)) and family is None:
        _warn_once()
    return font_manager.findfont(font_manager.FontProperties(family=family or BASE_FAMILY))
