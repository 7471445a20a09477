"""Gemma 3 from GGUF files: a tiny one written here (always runs) and the real 270M Q4_K_M
(pulled once into the test model cache; skipped without network), against `transformers`
loading the same file and against llama.cpp's references in shared/data/references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_paths import REFERENCES, models_home

from parrot.errors import ParrotError
from parrot.hub.gguf import read_gguf
from parrot.hub.gguf_model import gemma3_config, load_gguf_model
from parrot.hub.naming import GGUF_GEMMA3, invert, rename
from parrot.model import KVCache, ModelConfig, Transformer
from parrot.model.presets import get_preset

# transformers' GGUF reader assumes Gemma 3's fixed facts (pattern 6, local base 10000,
# query_pre_attn_scalar 256), so the tiny model keeps them: 6 layers, head_dim 256.
TINY_GEMMA3 = ModelConfig(
    vocab_size=300, context_length=128, d_model=64, n_layers=6, n_heads=2, n_kv_heads=1,
    head_dim=256, d_ff=96, positions="rope", rope_theta=1_000_000.0, rope_local_theta=10_000.0,
    norm="rmsnorm", norm_placement="sandwich", norm_eps=1e-6, mlp="geglu_tanh", bias=False,
    tie_embeddings=True, embed_scale=True, qk_norm=True, sliding_window=4, global_every=6,
)


def tiny_gemma3(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(TINY_GEMMA3).eval()
    with torch.no_grad():  # norm weights off 1 so a misplaced or offset norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def write_gemma3_gguf(model: Transformer, path: Path) -> Path:
    """Write `model` as llama.cpp's converter does: gemma3 metadata, its tensor names,
    norm weights as 1 + w (= parrot's w), q/k rows unpermuted, an SPM-style vocabulary."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.context_length)
    w.add_embedding_length(cfg.d_model)
    w.add_feed_forward_length(cfg.ff_size)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.kv_heads)
    w.add_key_length(cfg.head_size)
    w.add_value_length(cfg.head_size)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_sliding_window(cfg.sliding_window)
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"t{i}" for i in range(cfg.vocab_size - 4)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([3, 3, 3, 2] + [1] * (len(tokens) - 4))
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    to_gguf = invert(GGUF_GEMMA3)
    for name, tensor in model.state_dict().items():
        if name != "lm_head.weight":
            w.add_tensor(rename(name, to_gguf), np.ascontiguousarray(tensor.float().numpy()))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    pytest.importorskip("gguf")
    model = tiny_gemma3()
    return model, write_gemma3_gguf(model, tmp_path_factory.mktemp("gemma") / "tiny.gguf")


def tokens(length: int = 12) -> torch.Tensor:
    return torch.randint(0, 300, (2, length), generator=torch.Generator().manual_seed(3))


def test_tiny_gemma3_gguf_reproduces_the_source_model(tiny_file):
    source, path = tiny_file
    loaded = load_gguf_model(path)
    assert loaded.config == TINY_GEMMA3
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens()), source(tokens()), rtol=1e-5, atol=1e-5)


def test_tiny_gemma3_gguf_matches_transformers_reading_the_same_file(tiny_file):
    transformers = pytest.importorskip("transformers")
    _, path = tiny_file
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(load_gguf_model(path)(tokens()), reference(tokens()).logits,
                                   rtol=1e-4, atol=1e-4)


def test_gguf_gemma3_names_round_trip():
    for foreign, canonical in GGUF_GEMMA3.items():
        name = foreign.replace("{i}", "7")
        assert rename(rename(name, GGUF_GEMMA3), invert(GGUF_GEMMA3)) == name
        assert rename(name, GGUF_GEMMA3) == canonical.replace("{i}", "7")


def test_rope_scaled_gemma3_gguf_is_a_clear_error(tiny_file, tmp_path):
    _, path = tiny_file
    g = read_gguf(path)
    g.metadata["gemma3.rope.scaling.type"] = "linear"
    with pytest.raises(ParrotError, match="RoPE scaling"):
        gemma3_config(g)


# --- the real Gemma 3 270M ---------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma3_path() -> Path:
    from parrot.hub.pull import pull

    try:
        return pull("gemma3-270m", models_home())
    except ParrotError as err:
        pytest.skip(f"Gemma 3 GGUF unavailable: {err.message}")


@pytest.fixture(scope="module")
def gemma3(gemma3_path) -> Transformer:
    torch.set_num_threads(2)
    return load_gguf_model(gemma3_path)


@pytest.fixture(scope="module")
def reference() -> dict:
    path = REFERENCES / "gemma3-270m-q4_k_m.json"
    if not path.is_file():
        pytest.skip(f"llama.cpp references not found at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def greedy(model: Transformer, prompt: list[int], steps: int) -> list[int]:
    """Greedy decoding with a KV cache (cached decode == recompute is tested elsewhere)."""
    cache = KVCache(model.config, 1, len(prompt) + steps)
    out, x, pos = [], torch.tensor([prompt]), torch.arange(len(prompt))[None]
    with torch.no_grad():
        for _ in range(steps):
            out.append(int(model.logits(model.hidden(x, pos, cache)[:, -1]).argmax()))
            x, pos = torch.tensor([[out[-1]]]), pos[:, -1:] + 1
    return out


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_gemma3_270m_metadata_maps_to_the_preset(gemma3_path):
    g = read_gguf(gemma3_path)
    assert gemma3_config(g) == get_preset("gemma3-270m")
    assert "output.weight" not in g.tensors  # the head is tied to the Q8_0 embedding
    assert g.tensors["token_embd.weight"].qtype == "Q8_0"


def test_top_token_at_first_step_agrees_with_llama_cpp(gemma3, reference):
    for case in reference["greedy"]:
        with torch.no_grad():
            logits = gemma3.logits(gemma3.hidden(torch.tensor([case["prompt_ids"]]))[0, -1])
        top_id, top_logit = case["top5_first_step"][0]
        print(case["name"], "top", int(logits.argmax()), "llama.cpp", top_id,
              "delta logit", round(float(logits[top_id]) - top_logit, 3))
        assert int(logits.argmax()) == top_id, case["name"]
        # llama.cpp multiplies quantized activations: logits agree only loosely.
        assert abs(float(logits[top_id]) - top_logit) < 1.5


@pytest.mark.slow
def test_greedy_continuations_share_a_long_prefix_with_llama_cpp(gemma3, reference):
    lengths = {}
    for case in reference["greedy"]:
        ours = greedy(gemma3, case["prompt_ids"], len(case["greedy_ids"]))
        lengths[case["name"]] = common_prefix(ours, case["greedy_ids"])
    print("common greedy prefix with llama.cpp (of 24):", lengths)
    # Measured: plain_france 15, chat_france 13, code_fib 24 (all 24 tokens).
    assert all(n >= 8 for n in lengths.values()), lengths


@pytest.mark.slow
def test_logits_match_transformers_on_the_same_gguf(gemma3, gemma3_path, reference):
    """transformers dequantizes the same file; on a sequence longer than the 512-token
    window (so sliding and global layers differ) the fp32 forwards agree to ~1e-4."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        gemma3_path.parent, gguf_file=gemma3_path.name, dtype=torch.float32).eval()
    ids = torch.tensor([reference["greedy"][1]["prompt_ids"] + list(range(1000, 1600))])
    with torch.no_grad():
        ours, theirs = gemma3(ids), hf(ids).logits
    print("max |delta logit| vs transformers:", float((ours - theirs).abs().max()))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


# --- resolving and the CLI ----------------------------------------------------------------
def test_cli_on_an_unknown_gguf_architecture_exits_2_with_one_sentence(tiny_file, tmp_path,
                                                                       capsys):
    from parrot.cli import main

    bad = tmp_path / "other.gguf"
    bad.write_bytes(tiny_file[1].read_bytes().replace(b"gemma3", b"gemmaX"))
    assert main(["generate", str(bad), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "holds a 'gemmaX' model" in err and "Traceback" not in err


def test_cli_show_describes_gemma3_270m(gemma3_path, capsys, monkeypatch):
    from parrot.cli import main

    monkeypatch.setenv("PARROT_HOME", str(models_home()))
    assert main(["show", "gemma3-270m"]) == 0
    out = capsys.readouterr().out
    assert "gemma3" in out and "sandwich" in out and "sliding_window   512" in out


@pytest.mark.slow
def test_resolved_gemma3_270m_generates_like_llama_cpp(gemma3_path, reference):
    """resolve_model by name, then the engine's greedy decoding (with its KV cache) on the
    reference prompt: BOS is wanted, and the continuation follows llama.cpp's."""
    from parrot.hub.resolve import resolve_model
    from parrot.infer import Engine, SamplingParams

    model, tokenizer, info = resolve_model("gemma3-270m", home=models_home())
    assert info.architecture == "gemma3" and tokenizer.add_bos and info.bos_id == 2
    case = reference["greedy"][0]  # plain_france, a base-model prompt
    engine = Engine(model, tokenizer, max_batch=1, max_len=128, eos_ids=info.eos_ids)
    done = engine.generate(case["prompt_ids"], SamplingParams(temperature=0, max_new_tokens=24))
    assert common_prefix(list(done.token_ids), case["greedy_ids"]) >= 15
