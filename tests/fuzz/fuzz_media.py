"""Fuzz targets for pictures (#21) and documents (#19): seeds and loaders, used by
fuzz_targets.TARGETS."""

from __future__ import annotations

from pathlib import Path

import torch


def png_seed() -> bytes:
    from parrot.data.images import png_bytes

    return png_bytes(torch.rand(3, 12, 9))


def pdf_seed() -> bytes:
    import io

    from pypdf import PdfWriter

    writer, out = PdfWriter(), io.BytesIO()
    writer.add_blank_page(width=72, height=72)
    writer.add_metadata({"/Title": "seed"})
    writer.write(out)
    return out.getvalue()


def load_image_file(data: bytes, tmp: Path) -> None:
    """The picture rule users hit through --image and image_url parts."""
    from parrot.data.images import image_tensor

    (tmp / "picture.png").write_bytes(data)
    image_tensor(tmp / "picture.png", 32)


def read_document(name: str):
    """A document reader as indexing runs it: a file it cannot read is a warning, not an
    error, so here nothing at all may escape (a ParrotError included would be a bug too,
    but the rules allow it)."""
    def load(data: bytes, tmp: Path) -> None:
        from parrot.rag.documents import read_documents

        (tmp / name).write_bytes(data)
        warnings: list[str] = []
        for _path, _data, text in read_documents([tmp / name], warnings.append):
            assert text is not None or warnings
    return load
