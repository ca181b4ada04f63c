"""The direction of keras_mim's own imports: no cycles, and no import that goes up a layer.

The graph is read from the source with `ast`; nothing is imported, so the result is the
same on every backend. Every `import` / `from ... import` statement counts, including the
ones inside functions: a lazy import is still a dependency. Dynamic imports
(`importlib.import_module` of a computed name, as in `keras_mim/models/__init__.py`) are
not seen.

How an import becomes an edge (importer -> imported module):

- `import keras_mim.a.b`, and `from keras_mim.a import b` where `keras_mim.a.b` is a
  module: an edge to `keras_mim.a.b`.
- `from keras_mim.a import name` where `name` is not a module: an edge to the module that
  defines `name`. When `keras_mim.a` is a package whose `__init__.py` re-exports `name`
  (binds it by `from keras_mim.a.x import name`), the re-export is followed to
  `keras_mim.a.x`, and on from there. A name the `__init__.py` defines itself gives an edge to
  the package's `__init__` module.
- The parent packages that Python initialises first (`keras_mim/__init__.py`,
  `keras_mim/a/__init__.py`) are not edges. `keras_mim/__init__.py` gives every
  subpackage as part of the public API (imported on first use), and a subpackage's
  `__init__.py` imports its modules to re-export their names: counting them would put
  every module in a cycle through an `__init__` that only re-exports.

A package's `__init__` is otherwise a node like any other, with the edges it writes. A cycle
that would only show at import time through a subpackage's `__init__` (a module of `a`
importing from `b` while a module of `b` imports from `a`) is caught at the package level:
modules are collapsed to keras_mim's top-level modules and subpackages (`keras_mim.masking`,
`keras_mim.utils`, ...), and that graph must have no cycle either.

Layers (`LEVELS`): a module may import modules of its own level or lower, never higher.
"""

import ast
import collections
import pathlib

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = pathlib.Path(__file__).resolve().parents[1] / "keras_mim"
TOP = "keras_mim"

#: The level of each top-level module or subpackage of keras_mim, lowest first. DESIGN.md:
#: layers < masking/targets < models < cli, and data knows no model.
LEVELS = {
    # shared helpers: argument checks and copy_model, the private-Keras compatibility
    # module, masked reductions, weight EMAs, the registries' names as plain data (no imports)
    "utils": 0, "compat": 0, "losses": 0, "ema": 0, "registry_snapshot": 0,
    "layers": 1,
    # what a pretraining model is made of, and the input pipelines (data uses the crop of layers)
    "masking": 2, "targets": 2, "data": 2,
    "models": 3,
    # built on models: multi-device training (distribute and its backend-free parts),
    # checkpoints, evaluation, optimizers, figures
    "distribute": 4, "distribution_checks": 4, "model_parallel": 4,
    "checkpoints": 4, "evaluation": 4, "optimizers": 4, "callbacks": 4, "viz": 4, "viz_multimodal": 4,
    # the command line, and the public API (keras_mim/__init__.py), which the CLI may read
    # (`keras_mim.__version__`)
    "cli": 5, "": 5,
}

# Known exceptions (none): each cycle is the frozenset of the modules of one strongly
# connected component; each upward import is (importer, imported module).
KNOWN_CYCLES = set()
KNOWN_UPWARD = set()
KNOWN_PACKAGE_CYCLES = set()


def module_name(path, root=ROOT):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse_modules(root=ROOT):
    """`{module name: (path, ast tree)}` for every module of the package at `root`."""
    return {
        module_name(path, root): (path, ast.parse(path.read_text(), filename=str(path)))
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def is_package(modules, name):
    return modules[name][0].name == "__init__.py"


def from_base(modules, importer, node):
    """The module a `from ... import` statement imports from, a relative one resolved."""
    if not node.level:
        return node.module
    package = importer if is_package(modules, importer) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def reexports(modules, package):
    """`{bound name: (module, name)}` for the names a package's `__init__` binds with a
    top-level `from keras_mim... import name [as bound name]`."""
    bound = {}
    for node in modules[package][1].body:
        base = from_base(modules, package, node) if isinstance(node, ast.ImportFrom) else None
        if (base or "").split(".")[0] == TOP:
            bound.update({a.asname or a.name: (base, a.name) for a in node.names})
    return bound


def defining_module(modules, base, name, seen=()):
    """The module that `from base import name` depends on: `base.name` if that is a module,
    else the module defining `name`, following the re-exports of package `__init__`s."""
    if f"{base}.{name}" in modules:
        return f"{base}.{name}"
    if base in modules and is_package(modules, base) and base not in seen:
        source = reexports(modules, base).get(name)
        if source is not None:
            return defining_module(modules, *source, seen=seen + (base,))
    return base


def imports_of(modules, importer):
    """`[(line, imported module)]` for every keras_mim import in `importer`, lazy ones too."""
    edges = []
    for node in ast.walk(modules[importer][1]):
        if isinstance(node, ast.Import):
            edges += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == TOP]
        elif isinstance(node, ast.ImportFrom) and (from_base(modules, importer, node) or "").split(".")[0] == TOP:
            base = from_base(modules, importer, node)
            edges += [(node.lineno, base if a.name == "*" else defining_module(modules, base, a.name))
                      for a in node.names]
    return [(line, target) for line, target in edges if target in modules and target != importer]


def import_graph(modules):
    """`{importer: {imported module: line of its first import}}`."""
    graph = {}
    for name in modules:
        graph[name] = {}
        for line, target in sorted(imports_of(modules, name)):
            graph[name].setdefault(target, line)
    return graph


MODULES = parse_modules()
GRAPH = import_graph(MODULES)


def strongly_connected(graph):
    """The strongly connected components of `graph` that hold a cycle (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while node not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def a_cycle(graph, component):
    """A shortest cycle `[a, b, ..., a]` through the first module of a component."""
    start = min(component)
    parents, queue = {start: None}, collections.deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ == start:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return path[::-1] + [start]
            if succ in component and succ not in parents:
                parents[succ] = node
                queue.append(succ)
    raise AssertionError(f"no cycle in {component}")


def where(importer, line):
    return f"{MODULES[importer][0].relative_to(ROOT.parent)}:{line}"


def level(module):
    return LEVELS[module.split(".")[1] if "." in module else ""]


def package_graph():
    """The graph collapsed to keras_mim's top-level modules and subpackages:
    `{part: {imported part: (importing module, line)}}`, the public API left out."""
    collapsed = {}
    for importer, targets in GRAPH.items():
        if importer == TOP:
            continue
        part = ".".join(importer.split(".")[:2])
        edges = collapsed.setdefault(part, {})
        for target, line in targets.items():
            other = ".".join(target.split(".")[:2])
            if other not in (part, TOP):
                edges.setdefault(other, (importer, line))
    return collapsed


def upward_imports():
    """`{(importer, imported module): line}` for every import that goes up a level."""
    return {(a, b): line for a, targets in GRAPH.items() for b, line in targets.items() if level(b) > level(a)}


def test_every_part_of_the_package_has_a_level():
    missing = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(LEVELS))
    assert not missing, f"Give these parts of keras_mim a level in LEVELS: {missing}"


def test_no_import_cycles():
    new = [c for c in strongly_connected(GRAPH) if c not in KNOWN_CYCLES]
    cycles = [a_cycle(GRAPH, c) for c in new]
    assert not new, "Import cycles (each edge at the importing line):\n" + "\n".join(
        " -> ".join(f"{a} ({where(a, GRAPH[a][b])})" for a, b in zip(c, c[1:])) + f" -> {c[-1]}" for c in cycles
    )


def test_no_cycles_between_packages():
    collapsed = package_graph()
    new = [c for c in strongly_connected(collapsed) if c not in KNOWN_PACKAGE_CYCLES]
    cycles = [a_cycle(collapsed, c) for c in new]
    assert not new, "Cycles between keras_mim's packages (each edge at one importing line):\n" + "\n".join(
        " -> ".join(f"{a} ({where(*collapsed[a][b])})" for a, b in zip(c, c[1:])) + f" -> {c[-1]}" for c in cycles
    )


def test_no_upward_imports():
    new = {edge: line for edge, line in upward_imports().items() if edge not in KNOWN_UPWARD}
    assert not new, "Imports that go up a level (see LEVELS):\n" + "\n".join(
        f"{where(a, line)} imports {b} (level {level(b)}, above its own level {level(a)})"
        for (a, b), line in sorted(new.items())
    )


# ----------------------------------------------------------------------------- the checker itself
def test_cycles_are_found_and_named():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"e": 5}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["e"]]
    assert a_cycle(graph, frozenset("abc")) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b": 1}, "b": {}}) == []


def test_edges_follow_reexports_and_see_lazy_imports(tmp_path):
    files = {
        "__init__.py": "from keras_mim import low, pkg\nfrom keras_mim.pkg import Thing\n",
        "low.py": "def helper():\n    from keras_mim.pkg import Thing  # lazy\n",
        "pkg/__init__.py": "from keras_mim.pkg.thing import Thing as Thing\nLOCAL = 1\n",
        "pkg/thing.py": "from .. import low\nfrom keras_mim.pkg import LOCAL\nimport keras_mim.low, numpy\n",
    }
    for name, text in files.items():
        (tmp_path / TOP / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / TOP / name).write_text(text)
    graph = import_graph(parse_modules(tmp_path / TOP))
    assert graph == {
        # a re-exported name leads to the module that defines it, a module name to the module
        "keras_mim": {"keras_mim.low": 1, "keras_mim.pkg": 1, "keras_mim.pkg.thing": 2},
        "keras_mim.low": {"keras_mim.pkg.thing": 2},  # the lazy import, through the re-export
        # no edge to the __init__ modules Python runs first; a relative import resolved; a name
        # defined in a package __init__ leads to that __init__
        "keras_mim.pkg": {"keras_mim.pkg.thing": 1},
        "keras_mim.pkg.thing": {"keras_mim.low": 1, "keras_mim.pkg": 2},
    }
    # one cycle, through the lazy import and the __init__-defined name; the public API is not in it
    assert strongly_connected(graph) == [frozenset({"keras_mim.low", "keras_mim.pkg", "keras_mim.pkg.thing"})]
