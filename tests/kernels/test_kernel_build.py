"""How parrot's C kernel library is built, cached and skipped: once per machine, shared by
later processes, off with PARROT_NATIVE=0, and a warning (not a crash) without a compiler."""

from __future__ import annotations

import os
import textwrap

import pytest
from kernel_helpers import env_for, run_python

from parrot import kernels

native = pytest.mark.skipif(kernels.load(**kernels.settings_from(os.environ)) is None,
                            reason="no C compiler: kernels not built")


AVAILABLE = ("import os; from parrot import kernels; "
             "print('available', kernels.load(**kernels.settings_from(os.environ)) is not None)")


@native
def test_first_use_builds_one_library_and_a_second_process_reuses_it(tmp_path):
    first = run_python(AVAILABLE, env_for(tmp_path))
    assert first.returncode == 0 and "available True" in first.stdout, first.stderr
    built = sorted((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary left behind
    stamp = built[0].stat().st_mtime_ns
    second = run_python(AVAILABLE, env_for(tmp_path))
    assert second.returncode == 0 and "available True" in second.stdout, second.stderr
    assert sorted((tmp_path / "kernels").iterdir()) == built
    assert built[0].stat().st_mtime_ns == stamp


def test_parrot_native_0_disables_the_kernels_and_generation_still_works(tmp_path):
    script = textwrap.dedent("""
        import torch
        import os
        from parrot import kernels
        from parrot.adapt.prepare import prepare_for_inference
        from parrot.adapt.quantize import Int8Linear
        from parrot.infer import Engine, SamplingParams
        from parrot.model import Transformer, get_preset
        from parrot.tokenizer import Tokenizer
        torch.manual_seed(0)
        model = Transformer(get_preset("llama-tiny", vocab_size=256)).eval()
        settings = kernels.settings_from(os.environ)
        model = prepare_for_inference(model, "int8", **settings)
        layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
        assert layers and not any(m.kernels for m in layers)
        tokenizer = Tokenizer.train(["hello parrot"], vocab_size=256)
        params = SamplingParams(temperature=0.0, max_new_tokens=5, ignore_eos=True)
        done = Engine(model, tokenizer, max_batch=2).generate("hi", params)
        assert len(done.token_ids) == 5 and all(0 <= t < 256 for t in done.token_ids)
        print("available", kernels.load(**settings) is not None, "tokens", done.token_ids)
    """)
    result = run_python(script, env_for(tmp_path, PARROT_NATIVE="0"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "available False tokens" in result.stdout
    assert not (tmp_path / "kernels").exists()  # nothing was built


@pytest.mark.parametrize("cc", ["/nonexistent/cc", None])
def test_no_compiler_means_unavailable_not_a_crash(tmp_path, cc):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = env_for(tmp_path, PATH=str(empty))
    if cc is not None:
        env["CC"] = cc
    result = run_python(AVAILABLE, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "available False" in result.stdout
    assert "C kernels are unavailable" in result.stderr  # one logged warning
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("kernels/*.so"))


