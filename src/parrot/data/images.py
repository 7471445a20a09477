"""Images in: a PNG or JPEG from a file, a data URL or raw bytes, as the tensor a model reads.

The rule every image goes through (`load_image`, then `image_tensor`):

1. Only PNG and JPEG are read. The header is checked before any pixel is decoded: an
   image over MAX_PIXELS (16 megapixels) is refused, except a JPEG, which is decoded at
   1/2, 1/4 or 1/8 scale (the decoder's draft mode) when that brings it under the limit.
   So a 20,000 x 20,000 PNG is refused in one sentence and never allocated, while a
   20,000 x 400 strip (8 MP) is read and shrunk.
2. It is converted to RGB; transparency is composited onto black.
3. It is shrunk (area averaging, `BOX`) so its longer side is `size`, keeping the aspect
   ratio, and centred on a black `size` x `size` square (letterboxing, never stretching).
4. Pixels become floats in [0, 1], shape (3, size, size).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError

MAX_PIXELS = 16_000_000
FORMATS = ("PNG", "JPEG")


def image_bytes(source: str | Path | bytes) -> tuple[bytes, str]:
    """(the encoded bytes, a name for messages) of a path, a data URL or raw bytes."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "the image"
    text = str(source)
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if ";base64" not in header:
            raise ParrotError("An image data URL must be base64-encoded "
                              "(data:image/png;base64,...).")
        try:
            return base64.b64decode(payload, validate=True), "the data URL's image"
        except (binascii.Error, ValueError):
            raise ParrotError("The image data URL is not valid base64; encode the PNG or "
                              "JPEG file's bytes with base64.") from None
    path = Path(text)
    try:
        return path.read_bytes(), str(path)
    except OSError:  # missing, a folder, unreadable, or a name too long to be a path
        raise ParrotError(f"No image file {text[:200]}; give a PNG or JPEG path or a data "
                          "URL.") from None


def load_image(source: Any) -> Any:
    """A decoded RGB `PIL.Image` from a path, data URL, bytes, PIL image or (3, H, W)
    tensor in [0, 1] (rules 1-2)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, torch.Tensor):  # (3, H, W) floats in [0, 1], e.g. a drawn scene
        array = (source.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
        return Image.fromarray(array.contiguous().numpy(), "RGB")
    data, name = image_bytes(source)
    limit = f"over {MAX_PIXELS // 1_000_000} megapixels, the most parrot reads; downscale it first."
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:  # Pillow's own limit (about 179 MP) came first
        raise ParrotError(f"{name} is {limit}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        # ValueError, found by fuzzing: a PNG whose IHDR chunk is cut short
        raise ParrotError(f"{name} is not a PNG or JPEG image; give a PNG or JPEG file."
                          ) from None
    if image.format not in FORMATS:
        raise ParrotError(f"{name} is a {image.format} image; parrot reads PNG and JPEG only, "
                          "convert it first.")
    width, height = image.size
    if width * height > MAX_PIXELS and image.format == "JPEG":
        image.draft("RGB", _draft_target(width, height))  # the decoder's own downscaling
    if image.size[0] * image.size[1] > MAX_PIXELS:
        raise ParrotError(f"{name} is {width} x {height} pixels, {limit}")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError):  # Pillow: "image file is truncated", bad CRC
        raise ParrotError(f"{name} is truncated or corrupt; give a complete PNG or JPEG "
                          "file.") from None
    return _to_rgb(image)


def _draft_target(width: int, height: int) -> tuple[int, int]:
    """The smallest draft request whose scale (1/2, 1/4 or 1/8) fits MAX_PIXELS."""
    for scale in (2, 4, 8):
        if (width // scale) * (height // scale) <= MAX_PIXELS:
            return width // scale + 1, height // scale + 1
    return width // 8 + 1, height // 8 + 1


def _to_rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def image_tensor(source: Any, size: int) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1] by the module's rule (load, shrink, letterbox)."""
    from PIL import Image

    if isinstance(source, torch.Tensor) and tuple(source.shape) == (3, size, size):
        return source.float()  # already what the rule makes
    image = load_image(source)
    width, height = image.size
    scale = size / max(width, height)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    if shape != image.size:
        image = image.resize(shape, Image.Resampling.BOX, reducing_gap=2.0)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image, ((size - shape[0]) // 2, (size - shape[1]) // 2))
    pixels = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8)
    return pixels.view(size, size, 3).permute(2, 0, 1).float() / 255.0


def png_bytes(pixels: torch.Tensor) -> bytes:
    """(3, H, W) floats in [0, 1] -> PNG bytes (for writing scenes and tests)."""
    from PIL import Image

    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    buffer = io.BytesIO()
    Image.fromarray(array.numpy(), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    """bytes -> "data:image/png;base64,..." (what OpenAI clients send as image_url)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
