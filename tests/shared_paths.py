"""Where the tests find llama.cpp's reference files and keep the real models they pull."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REFERENCES = Path("/work/shared/data/references")
if not REFERENCES.is_dir():  # the repository's sibling `shared/` folder, wherever it lives
    REFERENCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "references"


def models_home() -> Path:
    """The test model cache under the system temp folder (kept between sessions, so the
    real models are pulled once per machine); $PARROT_TEST_HOME overrides it."""
    return Path(os.environ.get("PARROT_TEST_HOME",
                               Path(tempfile.gettempdir()) / "parrot-test-models"))


def reference_text(entry: dict) -> str:
    """The text of one tokenizer reference entry: given inline, or a CPython stdlib file
    (skipped when missing or not the file the reference was made from)."""
    import hashlib
    import sysconfig

    import pytest

    if "text" in entry:
        return entry["text"]
    path = Path(sysconfig.get_paths()["stdlib"]) / entry["stdlib_file"]
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine")
    text = path.read_text(encoding="utf-8")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != entry["sha256_of_text"]:
        pytest.skip(f"{path} differs from the CPython 3.11.7 file the reference used")
    return text
