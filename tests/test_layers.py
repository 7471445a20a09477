"""The layering of STYLE.md: a module imports only from its own layer or lower ones, the
packages STYLE.md keeps independent do not import each other, and parrot's modules
import each other without cycles.

Imports are read with `ast`, at any depth (a function-level import counts like one at the
top of the file), in every form: `import parrot.x`, `from parrot.x import y`,
`from parrot import x` and relative imports.
"""

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
    "eval": 5, "training": 5,
    "tools": 6, "rag": 6,
    "serve": 7, "viz": 7,
    "api": 8, "analysis": 8, "lessons": 8, "cli": 8, "__main__": 8, "__init__": 8,
}
# Same-layer packages that stay independent of each other, in both directions. eval and
# train: STYLE.md gives train no arrow to eval (the loop computes its own validation
# loss) and eval measures finished models. hub and rundir are not here: the one loader
# (hub/resolve.py) opens run directories, so hub -> rundir is allowed, but a run
# directory knows no formats (rundir -> hub is forbidden below). data needs neither.
_SIBLINGS = [("tokenizer", "model"), ("chat", "adapt"), ("data", "hub"), ("data", "rundir"),
             ("eval", "training"), ("tools", "rag"), ("serve", "viz")]
INDEPENDENT = {pair for a, b in _SIBLINGS for pair in ((a, b), (b, a))} | {("rundir", "hub")}
# Packages STYLE.md narrows further: "model imports only torch and utils" (and errors).
ONLY = {"model": {"errors", "utils"}}
# Removed by the prep branch (kernels are applied to the model from outside); the lead
# deletes this list at merge.
ALLOWED = {("model/attention.py", "kernels"), ("model/norms.py", "kernels")}
# Not this branch's files: wordpiece.py imports wordpiece_io inside WordPieceTokenizer.load
# and .save, and wordpiece_io imports WordPieceParts from wordpiece. The lead deletes this.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(SRC.rglob("*.py"))}


def _type_only_lines(tree: ast.AST) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: imports there never run."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, inner.end_lineno + 1))
    return lines


def imported_modules(source: str, module: str, is_package: bool = False,
                     runtime_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every parrot import in `source`, the code of `module`.

    `from parrot.a import b` names parrot.a.b when that is a module, else parrot.a (the
    package's __init__, which is what runs); relative imports are made absolute.
    `runtime_only` leaves out the imports under `if TYPE_CHECKING:`.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    tree = ast.parse(source)
    skip = _type_only_lines(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "parrot" or n.startswith("parrot.")]
    return found


def _imports(module: str, runtime_only: bool = False) -> list[tuple[int, str]]:
    path = MODULES[module]
    return imported_modules(path.read_text(), module, path.name == "__init__.py", runtime_only)


def _top(module: str) -> str:
    """The layer key of a module: parrot.hub.hf -> hub, parrot -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cross_package_imports() -> list[tuple[str, str, str]]:
    """(file:line, importer's package, imported module) for imports between packages."""
    out = []
    for module, path in MODULES.items():
        own = _top(module)
        assert own in LAYER, f"{own} is not assigned a layer in tests/test_layers.py"
        rel = path.relative_to(SRC).as_posix()
        for line, target in _imports(module):
            other = _top(target)
            assert other in LAYER, f"{rel}:{line} imports {target}, which has no layer"
            if other != own and (rel, other) not in ALLOWED:
                out.append((f"{rel}:{line}", own, target))
    return out


def test_the_import_reader_sees_every_form_of_import():
    source = ("from parrot import kernels\nimport parrot.model.cache\nfrom . import hf\n"
              "from ..model import ModelConfig\n"
              "def f():\n    from parrot.hub.pull import local_path\n")
    found = {name for _, name in imported_modules(source, "parrot.hub.resolve")}
    assert found == {"parrot.kernels", "parrot.model.cache", "parrot.hub.hf", "parrot.model",
                     "parrot.hub.pull"}


def test_no_module_imports_a_higher_layer():
    problems = [f"{where} imports {target}" for where, own, target in _cross_package_imports()
                if LAYER[_top(target)] > LAYER[own]]
    assert not problems, "\n".join(problems)


def test_packages_stay_independent_where_style_md_says_so():
    problems = [f"{where} imports {target}" for where, own, target in _cross_package_imports()
                if (own, _top(target)) in INDEPENDENT
                or _top(target) not in ONLY.get(own, LAYER)]
    assert not problems, "\n".join(problems)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module, each in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_through(start: str, members: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a strongly connected component")


def test_parrot_modules_import_each_other_without_cycles():
    graph = {m: {t for _, t in _imports(m, runtime_only=True) if t in MODULES} - {m}
             for m in MODULES}
    cycles = [" -> ".join(_cycle_through(c[0], set(c), graph)) + f"  (all of: {sorted(c)})"
              for c in _strongly_connected(graph) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_importing_the_model_pulls_in_no_format_or_server_library():
    code = (
        "import sys, parrot.model, parrot.tokenizer; "
        "bad = [m for m in ('fastapi', 'transformers', 'gguf', 'tokenizers', 'tiktoken') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
