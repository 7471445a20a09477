"""One HTML page comparing one or two models: perplexity and bits per byte, calibration
(ECE before and after temperature scaling, with reliability diagrams) and the scores of
lm-evaluation-harness tasks. Rendered from the JSON-ready dict `analysis.report_card`
builds; pictures are embedded as base64 PNGs, so the page is one self-contained file."""

from __future__ import annotations

import html
from typing import Any

from parrot.viz.calibration import figure_from_result
from parrot.viz.figure import png_data_uri

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}"
         "img{max-width:100%}.note{color:#666;font-size:90%}")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def _calibration_rows(models: list[dict], kind: str) -> list[list[str]]:
    rows = []
    for stage in ("before", "after"):
        for key, label in (("ece_width", "ECE, equal-width bins"),
                           ("ece_mass", "ECE, equal-mass bins"), ("nll", "NLL"),
                           ("accuracy", "accuracy")):
            rows.append([f"{label} ({stage})", *[_number(m[kind].get(stage, {}).get(key))
                                                  for m in models]])
    rows.append(["fitted temperature", *[_number(m[kind].get("temperature")) for m in models]])
    return rows


def render(card: dict[str, Any]) -> str:
    """The page for card = {"models": [per-model dict], "text": ..., "tasks": {...}}."""
    models = card["models"]
    names = [m["model"] for m in models]
    parts = [f"<h1>Report card: {html.escape(' vs '.join(names))}</h1>",
             f"<p class=note>Held-out text: {html.escape(card['text'])}. Calibration: "
             "temperature fitted on the first half of the predictions, every number measured on "
             "the second half.</p>", "<h2>Language modelling</h2>",
             _table(["", *names], [
                 ["parameters", *[f"{m['parameters']:,}" for m in models]],
                 ["perplexity", *[_number(m["perplexity"]["perplexity"], 3) for m in models]],
                 ["bits per byte", *[_number(m["perplexity"]["bits_per_byte"]) for m in models]],
                 ["scored tokens", *[str(m["perplexity"]["tokens"]) for m in models]]])]
    for kind, title in (("calibration_next_token", "Calibration: next-token prediction"),
                        ("calibration_choices", "Calibration: multiple choice (log-likelihood)")):
        parts += [f"<h2>{title}</h2>", _table(["", *names], _calibration_rows(models, kind))]
        for m in models:
            parts.append(f'<img alt="reliability diagram" '
                         f'src="{png_data_uri(figure_from_result(m[kind]), 90)}">')
    header = ["task, metric", *names]
    rows = [[f"{task}, {metric}", *[_number(m["tasks"].get(task, {}).get(metric)) for m in models]]
            for task in card["tasks"] for metric in ("acc", "acc_stderr", "acc_norm")]
    parts += ["<h2>lm-evaluation-harness tasks (in-process)</h2>",
              "<p class=note>" + "; ".join(f"{html.escape(t)}: {html.escape(d)}"
                                            for t, d in card["tasks"].items()) + "</p>",
              _table(header, rows)]
    return (f"<!doctype html><html><head><meta charset=utf-8><title>parrot report card"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
