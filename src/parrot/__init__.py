"""parrot: a complete, readable, fast large-language-model system.

Importing parrot does nothing beyond defining names; subpackages are imported on use.
"""

__version__ = "0.1.0"
