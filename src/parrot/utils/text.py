"""Token pieces made readable for tables and pictures."""

from __future__ import annotations


def visible_piece(raw: bytes) -> str:
    """A token's bytes made readable: spaces as '·', newlines as '\\n', and bytes that are
    only part of a UTF-8 character as hex like <e2 80>."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "<" + " ".join(f"{b:02x}" for b in raw) + ">"
    named = {" ": "·", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    # Other control characters have no glyph in most fonts: show their code instead.
    return "".join(named.get(ch, ch if ch.isprintable() else f"<{ord(ch):02x}>") for ch in text)
