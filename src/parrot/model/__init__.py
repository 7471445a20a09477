"""The configurable transformer: one model whose variants are `ModelConfig` values.

Imports only torch and parrot's lower layers (no format or server libraries).
"""

from parrot.model.attention import AttentionCapture
from parrot.model.cache import KVCache
from parrot.model.config import ModelConfig
from parrot.model.presets import PRESETS, get_preset
from parrot.model.seq2seq import EncoderDecoder, Seq2SeqCache, build_model
from parrot.model.transformer import Transformer
from parrot.model.vision import VisionConfig, VisionLanguageModel

__all__ = ["AttentionCapture", "EncoderDecoder", "KVCache", "ModelConfig", "PRESETS",
           "Seq2SeqCache", "Transformer", "VisionConfig", "VisionLanguageModel", "build_model",
           "get_preset"]
