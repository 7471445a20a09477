"""The layering of STYLE.md: a module imports only from its own layer or lower ones."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "parrot"

LAYER = {
    "errors": 0, "utils": 0,
    "kernels": 0,
    "tokenizer": 1, "model": 1,
    "chat": 2, "adapt": 2,
    "data": 3, "hub": 3, "rundir": 3,
    "infer": 4,
    "eval": 5, "train": 5,
    "tools": 6, "rag": 6,
    "serve": 7, "viz": 7,
    "api": 8, "cli": 8, "__main__": 8, "__init__": 8,
}
# Same-layer packages that must stay independent of each other.
INDEPENDENT = {("tokenizer", "model"), ("model", "tokenizer")}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imported_tops(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("parrot."):
            tops.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("parrot."):
                    tops.add(alias.name.split(".")[1])
    return tops


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in SRC.rglob("*.py"):
        own = _top(path)
        assert own in LAYER, f"{own} is not assigned a layer in tests/test_layers.py"
        for other in _imported_tops(path):
            if LAYER[other] > LAYER[own] or (own, other) in INDEPENDENT:
                problems.append(f"{path.relative_to(SRC)} imports parrot.{other}")
    assert not problems, problems


def test_importing_the_model_pulls_in_no_format_or_server_library():
    code = (
        "import sys, parrot.model, parrot.tokenizer; "
        "bad = [m for m in ('fastapi', 'transformers', 'gguf', 'tokenizers', 'tiktoken') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
