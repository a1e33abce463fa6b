"""The HTML of `audioret report`: one static UTF-8 page, no JavaScript, every text escaped.

Why plain strings: the page is small and fixed; a template engine would be one more dependency for a dozen
elements. Every piece of user text (captions, clip ids, paths) goes through `html.escape`, and every link through
`url_path`, so a caption with `<`, `&` or quotes, or a file name with `#`, `%` or spaces, renders as written.
"""
from __future__ import annotations

import html
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # report.py builds the queries and imports this module
    from audioret.trainer.report import RankedQuery

# Readable names of the metric keys trainer.metrics (and its extensions) produce; unknown keys show as they are.
METRIC_LABELS = {
    "map10": "mAP@10", "map16": "mAP@16", "r1": "R@1", "r5": "R@5", "r10": "R@10",
    "a2t_map10": "audio→text mAP@10", "a2t_map16": "audio→text mAP@16", "a2t_r1": "audio→text R@1",
    "a2t_r5": "audio→text R@5", "a2t_r10": "audio→text R@10",
    "chance_map10": "chance mAP@10", "chance_map16": "chance mAP@16", "n_captions": "captions", "n_clips": "clips",
}

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta, .note { color: #666; } table { border-collapse: collapse; }
table.metrics td, table.metrics th { padding: 3px 14px 3px 0; text-align: left; }
table.metrics td.num { font-variant-numeric: tabular-nums; text-align: right; }
section.query { margin: 14px 0 22px; padding: 10px 14px; background: #fafafa; border: 1px solid #e4e4e4; }
section.query h3 { font-size: 1.05em; margin: 0 0 6px; font-weight: 600; }
.stats { font-weight: normal; color: #555; font-size: 0.9em; margin-left: 8px; }
table.hits td, table.hits th { padding: 2px 12px 2px 0; text-align: left; vertical-align: middle; }
table.hits td.num { font-variant-numeric: tabular-nums; }
tr.correct td { background: #e3f4e1; } tr.gap td { color: #999; padding: 0; }
audio { height: 30px; width: 260px; vertical-align: middle; }
img.mel { height: 48px; width: 260px; image-rendering: pixelated; vertical-align: middle; }
img.figure { max-width: 100%; }
"""


@dataclass
class ClipMedia:
    """How a clip is shown: a player for its source file (href relative to the page), or its log-mel image."""

    name: str
    audio_href: str | None = None
    mel_href: str | None = None
    source: str | None = None  # the recorded source path, shown on hover


def url_path(relative: str) -> str:
    """A relative file path as a URL path (forward slashes, each part percent-encoded)."""
    return urllib.parse.quote(relative.replace("\\", "/"), safe="/")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def metrics_table(metrics: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """Every key of the metrics dict (readable label, key in a tooltip), then the context rows (sizes, chance)."""
    rows = []
    for key, value in [*metrics.items(), *context.items()]:
        label = METRIC_LABELS.get(key, key)
        rows.append(f'<tr><th title="{_e(key)}">{_e(label)}</th><td class="num">{_number(value)}</td></tr>')
    return '<table class="metrics">\n' + "\n".join(rows) + "\n</table>"


def _media(media: ClipMedia) -> str:
    if media.audio_href is not None:
        return f'<audio controls preload="metadata" src="{_e(media.audio_href)}"></audio>'
    if media.mel_href is not None:
        return (f'<img class="mel" src="{_e(media.mel_href)}" alt="log-mel of {_e(media.name)}" '
                f'title="source file not found: log-mel from the cache">')
    return '<span class="note">no source recorded</span>'


def query_block(number: int, query: "RankedQuery", media: Mapping[str, ClipMedia], top: int) -> str:
    """One query: caption, rank of its correct clip, its top clips (and the correct one when outside them)."""
    stats = f"correct clip at rank {query.rank} · AP@10 {query.ap10:.3f} · margin {query.margin:+.4f}"
    rows = ["<tr><th>rank</th><th>score</th><th>clip</th><th>listen</th></tr>"]
    for hit in query.hits:
        if hit.rank > top:
            rows.append('<tr class="gap"><td colspan="4">⋮</td></tr>')
        m = media[hit.clip_id]
        mark, cls = (" ✓", ' class="correct"') if hit.correct else ("", "")
        rows.append(f'<tr{cls}><td class="num">{hit.rank}</td>'
                    f'<td class="num">{hit.score:+.4f}</td><td title="{_e(m.source or "")}">{_e(m.name)}{mark}</td>'
                    f"<td>{_media(m)}</td></tr>")
    return (f'<section class="query"><h3>{number}. “{_e(query.caption)}”<span class="stats">{_e(stats)}</span>'
            f'</h3>\n<table class="hits">\n' + "\n".join(rows) + "\n</table></section>")


def figure(href: str | None, alt: str, missing: str) -> str:
    if href is None:
        return f'<p class="note">{_e(missing)}</p>'
    return f'<img class="figure" src="{_e(href)}" alt="{_e(alt)}">'


def page(title: str, meta: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole document: a heading, a line of context, then (heading, HTML body) sections."""
    body = "\n".join(f"<h2>{_e(h)}</h2>\n{content}" for h, content in sections)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{_e(title)}</h1>\n<p class=\"meta\">{_e(meta)}</p>\n"
            f"{body}\n</body>\n</html>\n")
