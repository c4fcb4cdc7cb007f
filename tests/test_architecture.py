"""The package's shape: no import cycle anywhere in zsvqa/, function-level imports included (a lazy import only
hides a cycle until the function runs); no function over 60 lines; a pipeline module that only composes. Read from
the source with `ast`, nothing imported."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "zsvqa"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root` (a package is its __init__.py)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports, anywhere in its body. Importing a module of a
    subpackage from outside that subpackage first runs the subpackage's __init__: that counts as an import too."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, one level up per further dot
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports the module; `from module import name`, it
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    found = set()
    for target in targets:
        while target and target not in modules:  # `import zsvqa.x.y` of a name that is no module: its module
            target = target.rpartition(".")[0]
        if not target:
            continue
        found.add(target)
        parts = target.split(".")
        for depth in range(2, len(parts)):  # enclosing subpackages the importer lies outside of
            enclosing = ".".join(parts[:depth])
            if not (name == enclosing or name.startswith(enclosing + ".")):
                found.add(enclosing)
    found.discard(name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (strongly connected components, Tarjan),
    as the modules in import order with the first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_around(group, graph) for group in groups]


def _path_around(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the group's first module, by breadth-first search inside the group."""
    start = group[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node] & set(group)):
                if other == start:
                    return paths[node] + [start]
                if other not in paths:
                    paths[other] = paths[node] + [other]
                    following.append(other)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def test_no_import_cycles_in_the_package() -> None:
    graph = import_graph(ROOT)
    assert {"zsvqa.pipeline", "zsvqa.datasets", "zsvqa.datasets.base"} <= set(graph)  # the walk found the package
    assert "zsvqa.datasets" in graph["zsvqa.evaluation"]
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in found)


def test_the_cycle_check_finds_lazy_relative_and_package_cycles(tmp_path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "import os\n\ndef later():\n    from pkg import b  # a function-level import\n",
        "b.py": "from .c import thing\n",
        "c.py": "from pkg.a import later\nthing = 1\n",
        "d.py": "from pkg.sub.leaf import value\n",  # runs pkg/sub/__init__.py first
        "sub/__init__.py": "from pkg.sub.leaf import value\nfrom pkg import d\n",
        "sub/leaf.py": "value = 1\n",
        "free.py": "from pkg import c\nfrom pkg.sub import leaf\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.sub.leaf"] == set()
    assert graph["pkg.d"] == {"pkg.sub", "pkg.sub.leaf"} and graph["pkg.sub"] == {"pkg.sub.leaf", "pkg.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["pkg.d", "pkg.sub", "pkg.d"]]
    (package / "a.py").write_text("import os\n")
    (package / "sub" / "__init__.py").write_text("")
    assert cycles(import_graph(package)) == []


MAX_FUNCTION_LINES = 60  # decorators and docstring included
MAX_PIPELINE_LINES = 300


def long_functions(root: Path, limit: int) -> list[str]:
    """Every function or method under `root` longer than `limit` lines, as "path:line name (n lines)"."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = node.end_lineno - start + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_functions_are_short_and_the_pipeline_only_composes() -> None:
    assert not long_functions(ROOT, MAX_FUNCTION_LINES)
    assert len((ROOT / "pipeline.py").read_text(encoding="utf-8").splitlines()) < MAX_PIPELINE_LINES


def test_the_length_check_counts_decorators_and_nested_functions(tmp_path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{n} = {n}" for n in range(4))
    (package / "m.py").write_text(f"@staticmethod\ndef outer():\n{body}\n    def inner():\n        return 1\n")
    assert long_functions(package, 8) == []  # outer: its decorator, def, four lines and inner's two
    assert long_functions(package, 7) == ["pkg/m.py:2 outer (8 lines)"]
