"""How text splits into tokens: coloured pieces with their ids (PNG, HTML, terminal)."""

from __future__ import annotations

import html
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from rich.text import Text

from parrot.errors import ParrotError
from parrot.tokenizer import Tokenizer
from parrot.utils.text import visible_piece
from parrot.viz.figure import TOKEN_COLOURS, new_figure

LINE_CHARS = 64  # characters per row in the picture before a row wraps


@dataclass(frozen=True)
class TokenPiece:
    """One token of a text: its id, its raw bytes and the readable form shown."""

    id: int
    raw: bytes
    label: str


def token_pieces(tokenizer: Tokenizer, text: str) -> list[TokenPiece]:
    """The tokens of `text` in order (special tokens written in the text are recognised)."""
    if not text:
        raise ParrotError("The text is empty; give some text to split into tokens.")
    ids = tokenizer.encode(text, allowed_special="all")
    return [TokenPiece(i, tokenizer.token_bytes(i), visible_piece(tokenizer.token_bytes(i)))
            for i in ids]


def layout_rows(pieces: list[TokenPiece], line_chars: int = LINE_CHARS
                ) -> list[list[tuple[int, int]]]:
    """Place pieces on rows: each row is [(piece index, starting column)], a piece wider
    than the remaining room starts a new row (and a piece after a newline does too)."""
    rows: list[list[tuple[int, int]]] = [[]]
    column = 0
    for index, piece in enumerate(pieces):
        width = max(len(piece.label), 1)
        if rows[-1] and column + width > line_chars:
            rows.append([])
            column = 0
        rows[-1].append((index, column))
        column += width
        if piece.label.endswith("\\n"):
            rows.append([])
            column = 0
    return [row for row in rows if row]


def tokens_figure(pieces: list[TokenPiece], title: str = "") -> Figure:
    """The pieces as coloured boxes laid out like the text, each with its id beneath."""
    rows = layout_rows(pieces)
    width = max(col + len(pieces[i].label) for row in rows for i, col in row)
    fig = new_figure(min(max(width * 0.16, 3.0), 12.0), 0.7 * len(rows) + 0.6)
    ax = fig.add_subplot()
    for r, row in enumerate(rows):
        y = -r * 2.0
        for index, column in row:
            piece = pieces[index]
            w = max(len(piece.label), 1)
            colour = TOKEN_COLOURS[index % len(TOKEN_COLOURS)]
            ax.add_patch(Rectangle((column, y), w, 1.0, facecolor=colour, edgecolor="white"))
            ax.text(column + w / 2, y + 0.5, piece.label, ha="center", va="center",
                    family="monospace", fontsize=9)
            ax.text(column + w / 2, y - 0.35, str(piece.id), ha="center", va="center",
                    family="monospace", fontsize=6, color="#444444")
    ax.set_xlim(0, width)
    ax.set_ylim(-2.0 * len(rows) + 0.8, 1.2)
    ax.set_axis_off()
    ax.set_title(title or f"{len(pieces)} tokens", fontsize=10)
    return fig


def tokens_html(pieces: list[TokenPiece]) -> str:
    """A self-contained HTML page: each piece a coloured span with its id under it."""
    spans = [f'<span class="t" style="background:{TOKEN_COLOURS[i % len(TOKEN_COLOURS)]}" '
             f'title="id {p.id}">{html.escape(p.label)}<sub>{p.id}</sub></span>'
             for i, p in enumerate(pieces)]
    style = ("body{font-family:monospace;line-height:2.6em}"
             ".t{display:inline-block;text-align:center;padding:0 2px;margin:1px}"
             "sub{display:block;font-size:0.6em;line-height:1em;color:#444}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>tokens</title>"
            f"<style>{style}</style></head><body><p>{len(pieces)} tokens</p>"
            f"<div>{''.join(spans)}</div></body></html>\n")


def tokens_rich(pieces: list[TokenPiece]) -> Text:
    """The pieces for the terminal: alternating background colours, then the id list."""
    text = Text.assemble(*((p.label, f"black on {TOKEN_COLOURS[i % len(TOKEN_COLOURS)]}")
                           for i, p in enumerate(pieces)))
    text.append("\n" + " ".join(str(p.id) for p in pieces))
    return text
