"""tonic's shape, checked: which parts may import which (ARCHITECTURE.md's table), no import
cycles, small modules and functions, and a command line that starts without the engines.

Every `import` and `from ... import` of tonic/**/*.py is read with `ast`, those inside
functions too. `from tonic.x import y` where `tonic/x/y.py` exists imports the module
`tonic.x.y`; otherwise it imports `tonic.x`.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT, tonic
from tonic.engine_catalog import DESCRIPTIONS, PREFERENCE

PACKAGE = ROOT / "tonic"

# The layers of ARCHITECTURE.md: what each may import directly (and so, through those,
# what they may import). "*": anything. Every layer may import `tonic` itself (its
# __version__) and `tonic.errors`. A module's layer is its folder under tonic/ (all of
# tonic/engines/, criu/ and docker/ included, is `engines`), or its own name for the
# modules right in tonic/; tonic/cli.py, tonic/cli_groups.py and tonic/commands/ are `cli`.
ALLOWED: dict[str, set[str] | str] = {
    "errors": set(),
    "engine_catalog": set(),
    "procs": set(),
    "watching": set(),
    "observe": set(),
    "error_handler": set(),
    "settings": set(),
    "store": {"settings"},
    "notebook": {"settings"},
    "results": {"notebook"},
    "outputs": {"results"},
    "view": {"notebook", "results"},
    "kernel": {"notebook", "procs", "results", "settings"},
    "timetravel": {"kernel", "notebook", "results", "store"},
    "engines": {
        "engine_catalog",
        "kernel",
        "observe",
        "procs",
        "results",
        "settings",
        "store",
        "timetravel",
    },
    "recorded": {"engines", "results"},
    "export": {"kernel", "notebook", "outputs", "recorded", "results", "store"},
    "live": {"engines", "export", "kernel", "notebook", "outputs", "results", "settings"},
    # The top: the commands, and the start-up client (launch) and warm server (server).
    "cli": "*",
    "startup": "*",
}
EVERYONE = {"tonic", "errors"}
# Imports the table allows besides its rows: the settings read TONIC_SERVER and
# TONIC_RUNTIME_DIR with the start-up client's own grammar (launch.py, which imports only
# built-in modules when it loads), so the two readings cannot differ.
PERMITTED = {("tonic.settings.table", "tonic.launch")}
TOP = {"cli", "startup"}

# Start-up's client/server knot: `tonic` (launch) hands the command to a warm server or
# runs the command line itself; the server imports the command line for its workers; the
# commands `tonic server ...` and `tonic doctor` ask launch and server about servers, and
# `tonic run` exits through launch. These modules may import each other in a cycle.
KNOT = re.compile(r"tonic\.(cli|cli_groups|launch|server|__main__|commands(\..*)?)$")

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 70
# All `import tonic.cli` may load: the command line builds its help from these alone.
CLI_IMPORTS = {
    *("tonic", "tonic.cli", "tonic.cli_groups", "tonic.error_handler", "tonic.errors"),
    "tonic.engine_catalog",
}


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the tonic module imported (resolved as the docstring says)
    line: int
    top_level: bool  # run on import: not in a function, not under `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "tonic"
    name = parts[1]
    if name in ("cli", "cli_groups", "commands"):
        return "cli"
    if name in ("launch", "server", "__main__"):
        return "startup"
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    nodes: list[ast.AST], top_level: bool = True
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in `nodes`, and whether it runs when the module loads."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, top_level
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _statements(list(ast.iter_child_nodes(node)), False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(list(node.body), False)
            yield from _statements(list(node.orelse), top_level)
        else:
            yield from _statements(list(ast.iter_child_nodes(node)), top_level)


def _resolve(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    assert node.level == 0 and node.module, "tonic imports by absolute names"
    for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        yield sub if sub in MODULES else node.module


def imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = []
    for node, top_level in _statements([tree]):
        for target in _resolve(node):
            if target.split(".")[0] == "tonic" and target != module:
                assert target in MODULES, f"{module}:{node.lineno} imports unknown {target}"
                found.append(Import(module, target, node.lineno, top_level))
    return found


IMPORTS = [i for m in MODULES for i in imports_of(m)]


def _where(i: Import) -> str:
    return f"{MODULES[i.importer].relative_to(ROOT)}:{i.line} imports {i.module}"


def test_the_imports_are_read() -> None:
    """A check of the reader itself: imports at the top, in functions, for types only."""
    got = {(i.importer, i.module, i.top_level) for i in IMPORTS}
    assert ("tonic.commands.run", "tonic.launch", True) in got  # from tonic import launch
    assert ("tonic.launch", "tonic.cli", False) in got  # in main()
    assert ("tonic.commands.run", "tonic.view", False) in got  # under `if TYPE_CHECKING:`
    assert ("tonic.engines.docker.engine", "tonic.engines.docker.api", False) in got
    assert ("tonic.cli", "tonic.commands.run", False) in got


def test_only_the_top_imports_the_commands() -> None:
    """Nothing below the command line imports tonic.cli or tonic.commands, even inside a
    function: the commands are built on the rest, never the other way round."""
    wrong = [
        _where(i)
        for i in IMPORTS
        if re.match(r"tonic\.(cli|commands)(\.|$)", i.module) and layer_of(i.importer) not in TOP
    ]
    assert not wrong, "\n".join(wrong)


def _closure(layer: str) -> set[str] | str:
    allowed = ALLOWED[layer]
    if allowed == "*":
        return "*"
    seen: set[str] = set()
    todo = list(allowed)
    while todo:
        below = todo.pop()
        if below not in seen:
            seen.add(below)
            more = ALLOWED[below]
            assert more != "*", f"{layer} may import the top layer {below}"
            todo.extend(more)
    return seen


def test_the_layer_table_has_no_cycle() -> None:
    """Below the top, every layer sits on layers that do not sit on it."""
    for layer in ALLOWED:
        closure = _closure(layer)
        assert closure == "*" or layer not in closure, f"{layer} may import itself"


def test_each_layer_imports_only_what_the_table_allows() -> None:
    wrong = []
    for i in IMPORTS:
        src, dst = layer_of(i.importer), layer_of(i.module)
        assert src in ALLOWED and (dst in ALLOWED or dst == "tonic"), f"no layer for {i}"
        allowed = _closure(src)
        if src == dst or dst in EVERYONE or allowed == "*":
            continue
        if (i.importer, i.module) in PERMITTED:
            continue
        if dst not in allowed:
            wrong.append(f"{_where(i)} (layer {src} may not import {dst})")
    assert not wrong, "\n".join(wrong)


def test_architecture_md_shows_this_table() -> None:
    """ARCHITECTURE.md's table of which part may import which is ALLOWED."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## Which parts may import which", 1)[1].split("\n## ", 1)[0]
    words: dict[str, set[str] | str] = {"anything": "*", "nothing of tonic but errors": set()}
    shown: dict[str, set[str] | str] = {}
    for parts, allowed in re.findall(r"^\| (`.+?) \| (.+?) \|$", section, re.M):
        for part in re.findall(r"^`(\w+)`|, `(\w+)`", parts):
            shown["".join(part)] = words.get(allowed, set(allowed.split(", ")))
    assert shown == ALLOWED


def _graph() -> dict[str, set[str]]:
    """What loading each module loads first: its top-level imports, and the packages
    around an imported module (their __init__ runs first) that are not its own."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if not i.top_level:
            continue
        parts = i.module.split(".")
        own = {".".join(i.importer.split(".")[:n]) for n in range(1, i.importer.count(".") + 2)}
        for n in range(1, len(parts) + 1):
            target = ".".join(parts[:n])
            if target not in own and target in MODULES:
                graph[i.importer].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_strongly_connected_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"], ["e"]]


def test_no_import_cycle_outside_the_start_up_knot() -> None:
    """No module needs, while it loads, a module that needs it (imports inside functions
    and for type checking only do not count); only the start-up knot (KNOT) may."""
    graph = _graph()
    cycles = [
        sorted(c)
        for c in strongly_connected(graph)
        if (len(c) > 1 or any(m in graph[m] for m in c)) and not all(KNOT.match(m) for m in c)
    ]
    assert not cycles, cycles


def test_launch_imports_nothing_of_tonic_at_start() -> None:
    """launch.py is every command's first module: only built-in modules when it loads."""
    assert not [_where(i) for i in IMPORTS if i.importer == "tonic.launch" and i.top_level]


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Every function under `node` (methods and nested ones too): its qualified name and
    its lines, from `def` to its last line."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            assert child.end_lineno is not None
            yield f"{prefix}{child.name}", child.end_lineno - child.lineno + 1
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _too_big() -> list[str]:
    out = []
    for path in MODULES.values():
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out.append(rel)
        for name, lines in _functions(ast.parse(text)):
            if lines > MAX_FUNCTION_LINES:
                out.append(f"{rel}:{name}")
    return out


def test_modules_and_functions_are_small() -> None:
    """No module over 450 lines, no function (methods and nested ones too, from `def` to
    its last line) over 70."""
    too_big = sorted(_too_big())
    assert not too_big, too_big


def test_the_command_line_loads_no_engine() -> None:
    """`tonic --help` (and the start of every command) needs none of the engines, the
    store, time travel or the kernel: only the command line, its error handler and the
    engine catalog."""
    code = "import json, sys, tonic.cli; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True, text=True
    )
    loaded = {m for m in json.loads(out.stdout) if m.split(".")[0] == "tonic"}
    heavy = ("tonic.engines", "tonic.store", "tonic.timetravel", "tonic.kernel")
    assert not {m for m in loaded if m.startswith(heavy)}
    assert loaded == CLI_IMPORTS


def test_the_engine_catalog_is_the_registry() -> None:
    """The static table `--help` reads names the engines of the registry, in its order."""
    from tonic import settings
    from tonic.engines import ENGINES
    from tonic.engines import PREFERENCE as REGISTRY_PREFERENCE

    assert list(ENGINES) == list(DESCRIPTIONS)
    made = {n: make(settings.current()) for n, make in ENGINES.items()}
    assert {n: e.name for n, e in made.items()} == {n: n for n in DESCRIPTIONS}
    assert {n: e.description for n, e in made.items()} == DESCRIPTIONS
    assert REGISTRY_PREFERENCE == PREFERENCE and set(PREFERENCE) <= set(DESCRIPTIONS)


def _text(help_output: bytes) -> str:
    """Help as words: without rich's boxes and line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", help_output.decode()).split())


def test_help_names_and_describes_the_engines() -> None:
    top = tonic("--help")
    assert top.code == 0, top.describe()
    assert "run" in _text(top.stdout)
    run = tonic("run", "--help")
    assert run.code == 0, run.describe()
    for name, description in DESCRIPTIONS.items():
        assert f"{name} ({description})" in _text(run.stdout)


def test_readme_layout_names_every_folder() -> None:
    """README.md's Layout section names every folder of the package and of the tests."""
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    folders = sorted(
        f"tonic/{p.parent.relative_to(PACKAGE).as_posix()}/" for p in PACKAGE.glob("*/__init__.py")
    )
    tests = sorted(
        f"{p.parent.relative_to(ROOT / 'tests').as_posix()}/"
        for p in (ROOT / "tests").glob("*/__init__.py")
    )
    missing = [f for f in folders if f"\n{f}" not in layout]
    missing += [f"tests/{t}" for t in tests if t not in layout]
    assert not missing, f"README.md's Layout section does not name {missing}"
