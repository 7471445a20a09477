"""Pictures of what happens inside a model: tokens, attention, embeddings, positions,
softmax temperature, and training-run reports. Each function returns a matplotlib Figure
(drawn by Agg, no display needed) and the data it plots, so notebooks and tests can use both.
"""

from parrot.viz.attention import AttentionMaps, attention_figure, attention_maps
from parrot.viz.embeddings import EmbeddingView, embedding_view, embeddings_figure
from parrot.viz.figure import png_bytes, save_png
from parrot.viz.positions import PositionPattern, position_pattern, positions_figure
from parrot.viz.report import RunReport, report_html, run_report
from parrot.viz.softmax import SoftmaxView, next_token_logits, softmax_figure, softmax_view
from parrot.viz.tokens import TokenPiece, token_pieces, tokens_figure, tokens_html, tokens_rich

__all__ = [
    "AttentionMaps", "EmbeddingView", "PositionPattern", "RunReport", "SoftmaxView",
    "TokenPiece", "attention_figure", "attention_maps", "embedding_view", "embeddings_figure",
    "next_token_logits", "png_bytes", "position_pattern", "positions_figure", "report_html",
    "run_report", "save_png", "softmax_figure", "softmax_view", "token_pieces",
    "tokens_figure", "tokens_html", "tokens_rich",
]
