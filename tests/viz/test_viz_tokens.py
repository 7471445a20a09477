import pytest

from parrot.errors import ParrotError
from parrot.viz import png_bytes, token_pieces, tokens_figure, tokens_html, tokens_rich
from parrot.viz.tokens import LINE_CHARS, layout_rows

TEXT = "the king and the queen\nwalked to the castle, 42 times ü"


def test_pieces_are_the_tokenizers_ids_and_bytes(tokenizer):
    pieces = token_pieces(tokenizer, TEXT)
    assert [p.id for p in pieces] == tokenizer.encode(TEXT)
    assert b"".join(p.raw for p in pieces) == TEXT.encode("utf-8")


def test_labels_make_spaces_and_newlines_visible(tokenizer):
    labels = [p.label for p in token_pieces(tokenizer, "a b\nc")]
    assert "".join(labels) == "a·b\\nc"


def test_layout_places_every_piece_once_within_the_line(tokenizer):
    pieces = token_pieces(tokenizer, TEXT * 5)
    rows = layout_rows(pieces)
    placed = [index for row in rows for index, _ in row]
    assert placed == list(range(len(pieces)))
    for row in rows:
        end = row[-1][1] + len(pieces[row[-1][0]].label)
        assert end <= LINE_CHARS or len(row) == 1


def test_figure_draws_each_piece_and_its_id(tokenizer):
    pieces = token_pieces(tokenizer, TEXT)
    fig = tokens_figure(pieces)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[0::2] == [p.label for p in pieces]
    assert texts[1::2] == [str(p.id) for p in pieces]
    assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_shows_pieces_and_ids_escaped(tokenizer):
    pieces = token_pieces(tokenizer, "<b>the</b>")
    page = tokens_html(pieces)
    assert "<b>the" not in page and "&lt;" in page
    for p in pieces:
        assert f"<sub>{p.id}</sub>" in page


def test_terminal_rendering_lists_pieces_then_ids(tokenizer):
    pieces = token_pieces(tokenizer, "the king")
    text = tokens_rich(pieces).plain
    assert text == "".join(p.label for p in pieces) + "\n" + " ".join(str(p.id) for p in pieces)


def test_empty_text_is_refused(tokenizer):
    with pytest.raises(ParrotError, match="empty"):
        token_pieces(tokenizer, "")
