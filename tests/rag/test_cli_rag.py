"""`parrot rag` end to end on the real MiniLM: index, re-index, search, and every bad input
answered with one sentence and exit code 2; `parrot serve --rag`'s routes."""

import importlib.util
import json
from pathlib import Path

import pytest
from encoder_helpers import minilm_dir
from shared_paths import models_home

from parrot.cli import main
from parrot.rag.sqlite_store import SqliteStore
from parrot.rag.store import check_model

DOCS = {
    "ops/logs.md": "# Logs\n\nRotate the logs with logrotate every night and keep seven days.",
    "ops/backup.txt": "Backups run at midnight and are copied to the NAS over rsync.",
    "pets/cats.rst": "Cats\n====\n\nCats sleep most of the day in warm places.",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    minilm_dir()  # pulled (or skipped) before anything runs
    root = tmp_path_factory.mktemp("rag")
    for name, text in DOCS.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text)
    (root / "empty").mkdir()
    return root


@pytest.fixture(autouse=True)
def parrot_home(monkeypatch):
    monkeypatch.setenv("PARROT_HOME", str(models_home()))


@pytest.fixture(scope="module")
def store(workspace):
    path = workspace / "notes.db"
    assert main(["rag", "index", str(workspace / "docs"), "--store", str(path)]) == 0
    return path


def _fails(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("parrot: error: "), err
    assert match in err, err
    return err


def test_reindexing_embeds_nothing_and_search_prints_ranked_sources(store, workspace, capsys):
    capsys.readouterr()
    assert main(["rag", "index", str(workspace / "docs"), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "3 unchanged" in out and "0 chunks embedded" in out
    assert main(["rag", "search", str(store), "how do I rotate the logs?", "--k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "1" and "ops/logs.md:" in lines[0]
    assert main(["rag", "search", str(store), "rotate logs", "--json", "--mode", "keyword"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"].endswith("logs.md")
    assert Path(hits[0]["path"]).read_text()[hits[0]["start"]:hits[0]["end"]] == hits[0]["text"]
    assert main(["rag", "search", str(store), "sleep", "--type", "rst", "--json"]) == 0
    assert {h["kind"] for h in json.loads(capsys.readouterr().out)} == {"rst"}


def test_a_store_of_another_embedding_model_is_refused(workspace, capsys):
    other = SqliteStore(workspace / "other.db")
    check_model(other, "other-encoder", 768)
    other.close()
    _fails(capsys, ["rag", "index", str(workspace / "docs"), "--store",
                    str(workspace / "other.db"), "--embed-model", "minilm-l6"],
           "was indexed with the embedding model other-encoder")


def test_an_unreachable_postgres_is_refused(workspace, capsys):
    _fails(capsys, ["rag", "index", str(workspace / "docs"), "--store",
                    "postgresql://nobody@127.0.0.1:9/db"], "Cannot reach PostgreSQL")


def test_an_empty_folder_is_refused(workspace, capsys):
    _fails(capsys, ["rag", "index", str(workspace / "empty"), "--store",
                    str(workspace / "e.db")], "No documents to index")


def test_a_question_longer_than_the_context_is_refused(store, capsys):
    _fails(capsys, ["rag", "search", str(store), "logs " * 400], "shorten it")


def test_k_of_zero_or_less_is_refused(store, capsys):
    for k in ("0", "-1"):
        _fails(capsys, ["rag", "search", str(store), "logs", "--k", k], "k must be a positive")


def test_a_missing_store_and_an_unknown_type_are_refused(store, workspace, capsys):
    _fails(capsys, ["rag", "search", str(workspace / "nope.db"), "logs"], "There is no store")
    _fails(capsys, ["rag", "search", str(store), "logs", "--type", "docx"], "Unknown file type")


def _serve_helpers():
    path = Path(__file__).resolve().parents[1] / "serve" / "serve_helpers.py"
    spec = importlib.util.spec_from_file_location("rag_serve_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_rag_search_route_and_chat_extension(store, tmp_path):
    from fastapi.testclient import TestClient

    from parrot.serve import ServeSettings, create_app
    from parrot.serve.rag import enable_rag

    helpers = _serve_helpers()
    run_dir = helpers.make_run_dir(tmp_path / "tiny", context_length=1024)
    app = create_app(lambda: helpers.loaded_from(run_dir), ServeSettings(model_name="tiny"))
    enable_rag(app, str(store), str(models_home()), k=2)
    with TestClient(app) as client:
        helpers.time.sleep(0.1)
        while client.get("/health").status_code == 503:
            helpers.time.sleep(0.05)
        found = client.post("/v1/rag/search", json={"query": "rotate the logs", "k": 2}).json()
        assert [h["rank"] for h in found["data"]] == [1, 2]
        assert found["data"][0]["path"].endswith("logs.md")
        chat = {"model": "tiny", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "How are the logs rotated?"}]}
        grounded = client.post("/v1/chat/completions", json=chat).json()
        assert grounded["rag"]["passages"][0]["path"].endswith("logs.md")
        assert grounded["usage"]["prompt_tokens"] > 60  # rules + passages + question
        plain = client.post("/v1/chat/completions", json={**chat, "rag": False}).json()
        assert "rag" not in plain and plain["usage"]["prompt_tokens"] < 40
        bad = client.post("/v1/rag/search", json={"query": "x", "k": 0})
        assert bad.status_code == 400
        schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 8}},
                  "required": ["answer"]}
        shaped = client.post("/v1/chat/completions", json={
            **chat, "max_tokens": 40, "temperature": 1.0, "seed": 3, "response_format": {
                "type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}).json()
        assert "answer" in json.loads(shaped["choices"][0]["message"]["content"])
        assert shaped["rag"]["passages"]  # grounded and constrained at once


def test_a_store_is_a_search_tool_for_agents(store):
    from parrot.cli.tools import tool_registry

    registry = tool_registry(f"calculator,rag:{store}")
    assert registry.names() == ["calculator", "search"]
    observation = registry.call("search", {"query": "how do I rotate the logs?", "k": 2})
    assert observation.startswith("[1] (") and "logs.md" in observation.split("\n")[0]


def test_an_agent_with_a_missing_store_exits_2(workspace, capsys):
    _fails(capsys, ["agent", "smollm2-135m-instruct", "q", "--tools",
                    f"rag:{workspace / 'missing.db'}"], "There is no store")
