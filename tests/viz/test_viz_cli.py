import pytest

from parrot.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [
    ["tokens", "{run}", "the king and the queen"],
    ["attention", "{run}", "the king and the queen", "--layer", "1", "--head", "0"],
    ["attention", "{run}", "the king and the queen", "--all"],
    ["embeddings", "{run}", "--words", "king", "queen", "man", "--analogy", "queen", "king",
     "man"],
    ["positions", "--kind", "sinusoidal", "--dim", "16", "--length", "20"],
    ["positions", "--kind", "rope", "--dim", "16", "--length", "20"],
    ["positions", "--kind", "alibi", "--heads", "4", "--length", "10"],
    ["softmax", "{run}", "the king and", "--temperatures", "0.5,1,2"],
])
def test_each_kind_writes_a_png_and_prints_its_path(argv, run_dir, tmp_path, capsys):
    out = tmp_path / "picture.png"
    argv = ["viz"] + [a.format(run=run_dir) for a in argv] + ["--out", str(out)]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == PNG
    assert capsys.readouterr().out.strip().endswith(str(out))


def test_tokens_prints_pieces_and_ids_and_can_write_html(run_dir, tmp_path, capsys):
    out = tmp_path / "tokens.html"
    assert main(["viz", "tokens", str(run_dir), "the king", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "·king" in printed and "<sub>" in out.read_text()


def test_run_writes_an_html_report_into_the_run(run_dir, capsys):
    assert main(["viz", "run", str(run_dir)]) == 0
    report = run_dir / "report.html"
    assert "data:image/png;base64," in report.read_text()
    assert capsys.readouterr().out.strip() == str(report)


@pytest.mark.parametrize(("argv", "message"), [
    (["attention", "{run}", "the king", "--layer", "5"], "Layer 5 is out of range"),
    (["attention", "{run}", "the king", "--layer", "0", "--head", "9"], "Head 9 is out of range"),
    (["attention", "{run}", "the king", "--all", "--layer", "0"], "--all shows every layer"),
    (["embeddings", "{run}", "--words", "woman"], "'woman' is not a single token"),
    (["softmax", "{run}", "the", "--temperatures", "0"], "Temperatures must be positive"),
    (["tokens", "{empty}", "hi"], "neither a parrot run directory"),
    (["run", "{empty}"], "has no metrics.jsonl records"),
    (["positions", "--kind", "rope", "--dim", "5"], "even dim"),
    (["attention", "{run}", "the king " * 40], "context length is 64"),
    (["positions", "--kind", "rope", "--out", "x.jpg"], "--out must name a .png file"),
])
def test_bad_input_is_one_sentence_and_exit_2(argv, message, run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["viz"] + [a.format(run=run_dir, empty=empty) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.png")] if argv[1] != "run" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
