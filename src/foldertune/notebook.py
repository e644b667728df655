"""What foldertune shows in a Jupyter notebook: progress bars, and the HTML pieces of its objects' inline displays.

    from foldertune.notebook import tqdm      # a widget bar in Jupyter with ipywidgets, text elsewhere
    html_table(["class", "images"], [["fishes", 28]])
    Figure("runs/r/plots/loss.png")           # shows the picture when it is the value of a cell

Nothing here imports IPython: an object shows itself in a notebook through `_repr_html_` / `_repr_png_`, which
Jupyter calls and every other caller ignores.
"""

from __future__ import annotations

import base64
import html
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from tqdm.std import tqdm as _text_tqdm


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (notebook, JupyterLab, VS Code, Colab), where cells display rich output."""
    kernel = sys.modules.get("ipykernel.zmqshell")
    if kernel is None or "IPython" not in sys.modules:
        return False
    return isinstance(sys.modules["IPython"].get_ipython(), kernel.ZMQInteractiveShell)


class _NotebookTextBar(_text_tqdm):
    """A text bar for a notebook without ipywidgets: shown, although the kernel's stderr is not a terminal."""

    def __init__(self, *args, disable: bool | None = False, **kwargs) -> None:
        super().__init__(*args, disable=bool(disable), **kwargs)


def _choose_bar() -> type:
    """tqdm's widget bar in a notebook with ipywidgets; a text bar otherwise (the terminal's bar outside Jupyter)."""
    if not in_jupyter():
        return _text_tqdm
    if any(name == "QT_API" or name.startswith("SPYDER") for name in os.environ):
        return _NotebookTextBar  # Qt console and Spyder: a kernel, but no widgets
    try:
        import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
        from tqdm.notebook import tqdm as widget_bar
    except ImportError:
        return _NotebookTextBar
    return widget_bar


tqdm = _choose_bar()


def escape(value: object) -> str:
    return html.escape(str(value))


def html_table(header: list[str] | None, rows: Iterable[Iterable[object]]) -> str:
    """A small table (without a header row when `header` is None); numbers are right-aligned, every cell escaped."""
    cell = "padding:2px 10px;border-bottom:1px solid #ddd"

    def td(value: object) -> str:
        align = "right" if isinstance(value, (int, float)) else "left"
        text = f"{value:.4f}" if isinstance(value, float) else escape(value)
        return f'<td style="{cell};text-align:{align}">{text}</td>'

    head = "".join(f'<th style="{cell};text-align:left">{escape(name)}</th>' for name in header or [])
    body = "".join("<tr>" + "".join(td(value) for value in row) + "</tr>" for row in rows)
    return f'<table style="border-collapse:collapse;margin:4px 0">{f"<tr>{head}</tr>" if head else ""}{body}</table>'


def png_tag(path: str | os.PathLike, *, width: int, alt: str) -> str:
    """An <img> holding the PNG file itself (a data URL), so the notebook keeps it after the run folder moves."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" style="width:{width}px;max-width:100%">'


def card(title: str, body: str) -> str:
    """The frame every foldertune object's display shares."""
    return (
        '<div class="foldertune" style="font-family:system-ui,sans-serif;border:1px solid #ccd;border-radius:6px;'
        f'padding:8px 12px;margin:4px 0"><div style="font-weight:600;margin-bottom:4px">{title}</div>{body}</div>'
    )


class Html:
    """A piece of HTML that Jupyter displays as it is (the report in a frame, for instance)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return self.text


class Figure:
    """A PNG figure of a run folder, displayed inline when it is the value of a cell."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Figure('{self.path}')"

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()
