"""check.html: the dataset doctor's verdict as one self-contained page (thumbnails embedded, no scripts, no network).

    write_check_page(report, "check.html")      # report: a DataCheck, with or without the label check

Sections: the counts and every kind found; suspected label errors (likeliest first) with the given and the suggested
class and the nearest images of each; near-duplicate pairs side by side (leaks and label conflicts first); outliers;
unreadable files. Each section shows at most MAX_SHOWN items; check.csv has every file.
"""

from __future__ import annotations

import base64
import io
import os
from html import escape
from pathlib import Path

from foldertune.data.check import KINDS, DataCheck
from foldertune.data.images import ImageReadError, open_image
from foldertune.data.split import split_counts
from foldertune.runs.atomic import atomic_open

MAX_SHOWN = 100  # items per section; the CSV has them all
THUMBNAIL = 128  # pixels, the longer side
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", "PingFang SC",
       "Microsoft YaHei", sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img.t { max-width: 128px; max-height: 128px; display: block; } .row { display: flex; gap: 0.3rem; }
.row img.t { max-width: 80px; max-height: 80px; }
.muted { color: #777; } .warning { color: #a15c00; } .error { color: #b00020; } .path { font-size: 0.8rem; }
"""


def write_check_page(report: DataCheck, path: str | os.PathLike) -> Path:
    """Write the page (atomically); returns its path."""
    thumbs = _Thumbnails()
    parts = [_overview(report), _label_issues(report, thumbs), _near_duplicates(report, thumbs),
             _outliers(report, thumbs), _unreadable(report)]  # fmt: skip
    title = f"foldertune check: {report.source}"
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f"<body><h1>Data check</h1><p class='muted'>{escape(report.source)}</p>{''.join(parts)}</body></html>\n"
    )
    path = Path(path)
    with atomic_open(path) as handle:
        handle.write(page)
    return path


def _overview(report: DataCheck) -> str:
    counts = split_counts(report.records)
    columns = [c for c in ("class", "train", "val", "test", "total") if c in ("class", "total") or any(
        row[c] for row in counts)]  # fmt: skip
    html = _table([{c: row[c] for c in columns} for row in counts], columns)
    html += "".join(f"<p class='muted'>{escape(line)}</p>" for line in report.about)
    html += "".join(f"<p class='warning'>warning: {escape(text)}</p>" for text in report.warnings)
    found = [{"finding": kind, "severity": level, "files": report.count(kind), "meaning": meaning}
             for kind, (level, meaning) in KINDS.items() if report.count(kind)]  # fmt: skip
    html += _table(found, ["finding", "severity", "files", "meaning"]) if found else "<p>No findings.</p>"
    return html


def _label_issues(report: DataCheck, thumbs: _Thumbnails) -> str:
    if not report.labels_checked:
        return "<h2>Labels</h2><p class='muted'>Not checked: <code>foldertune check DATA --labels</code> does.</p>"
    suspects = [path for path in report.ranked.get("label-issue", []) if _has(report, path, "label-issue")]
    html = f"<h2>Suspected label errors ({len(suspects)})</h2>"
    if not suspects:
        return html + "<p>None: every image looks most like its own class.</p>"
    html += ("<p class='muted'>Likeliest first. Each image beside its nearest images in the class it is filed under "
             "and in the class the model suggests.</p>")  # fmt: skip
    rows = []
    for path in suspects[:MAX_SHOWN]:
        record, scores = report.by_path(path), report.scores[path]
        near = report.neighbours.get(path, {})
        rows.append(
            f"<tr><td>{thumbs.img(path)}<div class='path'>{escape(report.shown(path))}</div></td>"
            f"<td>{escape(record.label)}</td><td><b>{escape(str(scores['suggested_class']))}</b></td>"
            f"<td class='n'>{escape(str(scores['label_score']))}</td>"
            f"<td><div class='row'>{''.join(thumbs.img(p) for p in near.get('given', []))}</div></td>"
            f"<td><div class='row'>{''.join(thumbs.img(p) for p in near.get('suggested', []))}</div></td></tr>"
        )
    head = "".join(
        f"<th>{escape(c)}</th>"
        for c in ("image", "filed as", "suggested", "score", "nearest in its class", "nearest in the suggested class")
    )
    return html + f"<table><tr>{head}</tr>{''.join(rows)}</table>" + _more(len(suspects))


def _near_duplicates(report: DataCheck, thumbs: _Thumbnails) -> str:
    pairs = sorted(report.near_pairs, key=lambda pair: _near_order(report, pair))
    groups = [[r.path for r in group] for group in report.duplicate_groups]
    html = f"<h2>Near-duplicates ({len(pairs)} pair(s)) and exact copies ({len(groups)} group(s))</h2>"
    if not pairs and not groups:
        return html + "<p>None found.</p>"
    rows = []
    for pair in pairs[:MAX_SHOWN]:
        first, second = report.by_path(pair.first), report.by_path(pair.second)
        kind = _pair_kind(first, second)
        rows.append(
            f"<tr><td class='{'warning' if kind != 'near-duplicate' else 'muted'}'>{escape(kind)}</td>"
            f"<td><div class='row'>{thumbs.img(pair.first)}{thumbs.img(pair.second)}</div></td>"
            f"<td class='path'>{escape(_where(report, first))}<br>{escape(_where(report, second))}</td>"
            f"<td>{escape(pair.how)}</td></tr>"
        )
    for group in groups[: max(0, MAX_SHOWN - len(rows))]:
        shown = "<br>".join(escape(_where(report, report.by_path(path))) for path in group)
        rows.append(f"<tr><td>identical bytes</td><td><div class='row'>{thumbs.img(group[0])}</div></td>"
                    f"<td class='path'>{shown}</td><td>same file contents</td></tr>")  # fmt: skip
    head = "".join(f"<th>{c}</th>" for c in ("kind", "images", "where", "found by"))
    return html + f"<table><tr>{head}</tr>{''.join(rows)}</table>" + _more(len(pairs) + len(groups))


def _outliers(report: DataCheck, thumbs: _Thumbnails) -> str:
    if not report.labels_checked:
        return ""
    outliers = [path for path in report.ranked.get("outlier", []) if _has(report, path, "outlier")]
    html = f"<h2>Outliers ({len(outliers)})</h2>"
    if not outliers:
        return html + "<p>None: every image has close neighbours.</p>"
    cells = "".join(
        f"<td>{thumbs.img(path)}<div class='path'>{escape(report.shown(path))}<br>"
        f"score {escape(str(report.scores[path]['outlier_score']))}</div></td>"
        for path in outliers[:MAX_SHOWN]
    )
    return html + f"<table><tr>{cells}</tr></table>" + _more(len(outliers))


def _unreadable(report: DataCheck) -> str:
    bad = report.unreadable_files()
    if not bad:
        return ""
    rows = [{"file": report.shown(s.path), "reason": s.reason} for s in bad[:MAX_SHOWN]]
    return f"<h2 class='error'>Unreadable ({len(bad)}): left out of training</h2>" + _table(rows, ["file", "reason"])


class _Thumbnails:
    """Small JPEG thumbnails as data: URLs, each image read once."""

    def __init__(self) -> None:
        self.done: dict[str, str] = {}

    def img(self, path: str) -> str:
        if path not in self.done:
            try:
                with open_image(path, min_side=THUMBNAIL) as image:
                    image.thumbnail((THUMBNAIL, THUMBNAIL))
                    buffer = io.BytesIO()
                    image.save(buffer, "JPEG", quality=80)
                data = base64.b64encode(buffer.getvalue()).decode("ascii")
                self.done[path] = f'<img class="t" src="data:image/jpeg;base64,{data}" alt="{escape(Path(path).name)}">'
            except (ImageReadError, OSError):
                self.done[path] = f"<span class='muted'>{escape(Path(path).name)} (unreadable)</span>"
        return self.done[path]


def _has(report: DataCheck, path: str, kind: str) -> bool:
    return any(f.kind == kind for f in report.findings.get(path, []))


def _pair_kind(first, second) -> str:
    if first.split and second.split and first.split != second.split:
        return "leak"
    return "label conflict" if first.label != second.label else "near-duplicate"


def _near_order(report: DataCheck, pair) -> tuple[int, str]:
    kind = _pair_kind(report.by_path(pair.first), report.by_path(pair.second))
    return ({"leak": 0, "label conflict": 1}.get(kind, 2), pair.first)


def _where(report: DataCheck, record) -> str:
    split = f"{record.split}, " if record.split else ""
    return f"{report.shown(record.path)} ({split}{record.label})"


def _more(count: int) -> str:
    return f"<p class='muted'>... and {count - MAX_SHOWN} more in check.csv</p>" if count > MAX_SHOWN else ""


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' class=n' if isinstance(row.get(c), int) else ''}>{escape(str(row.get(c, '')))}</td>"
            for c in columns
        ) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"
