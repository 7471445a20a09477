"""`parrot generate/chat --image` and `parrot viz attention --image` on a tiny VLM run."""

import io
import json

import pytest
import torch
from vlm_helpers import make_vlm_run, scene_png

from parrot import cli
from parrot.data.images import png_bytes


@pytest.fixture(scope="module")
def vlm_run(tmp_path_factory):
    torch.set_num_threads(1)
    return make_vlm_run(tmp_path_factory.mktemp("vlm") / "run")


@pytest.fixture
def parrot(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("generate", "chat", "viz"))

    def call(*argv, stdin=None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_generate_reads_the_image_and_reports_its_encoder_time(vlm_run, parrot, tmp_path):
    picture = scene_png(tmp_path / "scene.png")
    code, out, _ = parrot("generate", vlm_run, "--image", picture, "--prompt",
                          "Which digit is this?", "--json", "--temperature", "0",
                          "--max-new-tokens", "3", "--quantize", "none")
    result = json.loads(out)
    assert code == 0 and result["stats"]["prompt_tokens"] > 16  # 16 image tokens + text
    assert result["stats"]["image_encode_s"] > 0


def test_chat_keeps_the_picture_for_every_turn(vlm_run, parrot, tmp_path):
    picture = scene_png(tmp_path / "scene.png")
    code, out, err = parrot("chat", vlm_run, "--image", picture, "--temperature", "0",
                            "--max-new-tokens", "2", "--quantize", "none",
                            stdin="How many objects are there?\nWhat colour is it?\n/stats\n")
    assert code == 0 and "reused" in err
    reused = int(err.split("tokens (")[1].split(" reused")[0])
    assert reused > 16  # the second turn found the picture's tokens in the cache


@pytest.mark.parametrize("cut, message", [(None, "not a PNG or JPEG"),
                                          (0.5, "truncated or corrupt")])
def test_bad_image_files_are_one_sentence_and_exit_2(vlm_run, parrot, tmp_path, cut, message):
    bad = tmp_path / "bad.png"
    if cut is None:
        bad.write_text("definitely not a picture")
    else:  # a real PNG cut short
        whole = png_bytes(torch.rand(3, 64, 64))
        bad.write_bytes(whole[: int(len(whole) * cut)])
    code, _, err = parrot("generate", vlm_run, "--image", bad, "--prompt", "hi",
                          "--quantize", "none")
    assert code == 2 and message in err and "Traceback" not in err


def test_an_image_for_a_text_only_model_is_exit_2(run_dir, parrot, tmp_path):
    picture = scene_png(tmp_path / "scene.png")
    code, _, err = parrot("generate", run_dir, "--image", picture, "--prompt", "hi")
    assert code == 2 and "text-only model" in err


def test_more_images_than_placeholders_is_exit_2(vlm_run, parrot, tmp_path):
    picture = scene_png(tmp_path / "scene.png")
    code, _, err = parrot("generate", vlm_run, "--image", picture, "--image", picture,
                          "--prompt", "hi", "--quantize", "none")
    assert code == 2 and "at most 1" in err


def test_viz_attention_draws_the_question_over_the_patches(vlm_run, parrot, tmp_path):
    picture = scene_png(tmp_path / "scene.png")
    out = tmp_path / "look.png"
    code, printed, _ = parrot("viz", "attention", vlm_run, "What colour is the square?",
                              "--image", picture, "--out", out)
    assert code == 0 and out.read_bytes()[:4] == b"\x89PNG" and "by layer" in printed


def test_patch_attention_sums_to_the_share_on_the_picture(vlm_run, tmp_path):
    from parrot.rundir import load_model
    from parrot.viz.image_attention import patch_attention

    model, tokenizer, _ = load_model(vlm_run)
    view = patch_attention(model, tokenizer, "What colour is the square?",
                           scene_png(tmp_path / "s.png"))
    grid = model.vision_config.image_size // model.vision_config.patch_size
    assert view.maps.shape == (model.config.n_layers, grid, grid)
    assert ((view.image_share > 0) & (view.image_share < 1)).all()
    torch.testing.assert_close(torch.tensor(view.maps.sum(axis=(1, 2))),
                               torch.tensor(view.image_share))
