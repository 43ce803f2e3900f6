"""Continuing a paused process with an edited suffix: the check, and equality with node."""

from __future__ import annotations

import difflib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import node_strips_types
from tonic.kernel.driver import KernelOptions, Program, run_kernel
from tonic.kernel.protocol import GO, Command, Eval
from tonic.notebook.cells import Notebook, parse
from tonic.notebook.instrument import Instrumented, instrument, pause_site
from tonic.results import NullSink, RunResult
from tonic.timetravel.continuation import check, free_names, keep_functions, suffix_source


def nb(source: str, filename: str = "nb.js") -> Notebook:
    return parse(source.encode(), filename=filename)


# -- the check ------------------------------------------------------------------------

# (id, old, new, k, None when continuing is allowed, else a substring of the reason)
CHECKS: list[tuple[str, str, str, int, str | None]] = [
    (
        "literal edit later",
        "let n = 1;\n\nconsole.log('n', n);\n",
        "let n = 1;\n\nconsole.log('n+1', n + 1);\n",
        1,
        None,
    ),
    ("cell added", "let n = 1;\n\nn++;\n", "let n = 1;\n\nn++;\n\nconsole.log(n);\n", 1, None),
    ("cell removed", "let n = 1;\n\nn++;\n\nconsole.log(n);\n", "let n = 1;\n\nn++;\n", 2, None),
    ("last cell, unchanged", "let n = 1;\n\nn++;\n", "let n = 1;\n\nn++;\n", 2, None),
    (
        "sloppy var added",
        "var total = 0;\n\nconsole.log(total);\n",
        "var total = 0;\n\nvar extra = 1;\nconsole.log(total + extra);\n",
        1,
        None,
    ),
    (
        "unchanged function kept",
        "console.log(greet());\n\nfunction greet() { return 'hi'; }\n\nconsole.log(1);\n",
        "console.log(greet());\n\nfunction greet() { return 'hi'; }\n\nconsole.log(2);\n",
        1,
        None,
    ),
    (
        "strict file, lexical suffix",
        "'use strict';\nconst a = 1;\n\nconsole.log(a);\n",
        "'use strict';\nconst a = 1;\n\nconst b = 2;\nclass K {}\nfunction f() {}\n",
        1,
        None,
    ),
    (
        "var declared in cells 1..k too",
        "var x = 1;\nsetTimeout(() => console.log(x));\n\nvar x = 2;\n",
        "var x = 1;\nsetTimeout(() => console.log(x));\n\nx = 3;\n",
        1,
        None,
    ),
    (
        "rule a: direct eval",
        "eval('1');\n\nconsole.log(1);\n",
        "eval('1');\n\nconsole.log(2);\n",
        1,
        "direct eval",
    ),
    (
        "rule a: with",
        "with (Math) { max(1, 2); }\n\nconsole.log(1);\n",
        "with (Math) { max(1, 2); }\n\nconsole.log(2);\n",
        1,
        "with statement",
    ),
    (
        "rule a: eval in a hoisted old function",
        "run('1');\n\nfunction run(s) { return eval(s); }\n",
        "run('1');\n\nfunction run(s) { return eval(s); }\nconsole.log(2);\n",
        1,
        "direct eval",
    ),
    (
        "rule b: const read by a prefix closure",
        "function show() { return cfg.x; }\n\nconst cfg = { x: 1 };\n",
        "function show() { return cfg.x; }\n\nconst cfg = { x: 2 };\n",
        1,
        "declares `cfg` with const, and cell 1 refers to it",
    ),
    (
        "rule b: class",
        "const make = () => new K();\n\nconsole.log(1);\n",
        "const make = () => new K();\n\nclass K {}\n",
        1,
        "declares `K` with class",
    ),
    (
        "rule c: var added and read before",
        "function report() { return extra; }\n\nconsole.log(1);\n",
        "function report() { return extra; }\n\nvar extra = 100;\n",
        1,
        "declares `extra` with var, and cell 1 refers to it",
    ),
    (
        "sloppy var redeclared, read by a prefix closure",
        "var x = 1;\nsetTimeout(() => console.log(x));\n\nconsole.log(0);\n",
        "var x = 1;\nsetTimeout(() => console.log(x));\n\nvar x = 3;\n",
        1,
        "declares `x` with var, which cell 1 already bound",
    ),
    (
        "rule b: var removed",
        "setTimeout(() => console.log(typeof v));\n\nvar v = 1;\n",
        "setTimeout(() => console.log(typeof v));\n\nconsole.log(1);\n",
        1,
        "only the old version declares `v`",
    ),
    (
        "rule b: transitively through an old function",
        "console.log(outer());\n\nfunction outer() { return inner(); }\n"
        "function inner() { return 1; }\n\nlet z = 1;\n",
        "console.log(outer());\n\nfunction outer() { return inner(); }\n"
        "function inner() { return 1; }\n\nlet z = 2;\nconst inner2 = 3;\n",
        1,
        None,
    ),
    (
        "rule c: function changed",
        "console.log(greet());\n\nfunction greet() { return 'v1'; }\n",
        "console.log(greet());\n\nfunction greet() { return 'v2'; }\n",
        1,
        "function `greet` changed",
    ),
    (
        "rule c: function called through another changed",
        "console.log(outer());\n\nfunction outer() { return inner(); }\n\n"
        "function inner() { return 1; }\n",
        "console.log(outer());\n\nfunction outer() { return inner(); }\n\n"
        "function inner() { return 2; }\n",
        1,
        "function `inner` changed",
    ),
    (
        "rule c: function moved",
        "console.log(greet());\n\nfunction greet() { return 'v1'; }\n",
        "console.log(greet());\n\nconsole.log(0);\nfunction greet() { return 'v1'; }\n",
        1,
        "function `greet` moved",
    ),
    (
        "rule c: strict var",
        "'use strict';\nfunction f() { return v; }\n\nvar v = 1;\n",
        "'use strict';\nfunction f() { return v; }\n\nvar v = 2;\n",
        1,
        "binding of its own (strict code)",
    ),
    (
        "strict file, unchanged function kept",
        "'use strict';\nconsole.log(check(1));\n\nfunction check(x) { return x > 0; }\n",
        "'use strict';\nconsole.log(check(1));\n\nfunction check(x) { return x > 0; }\n"
        "console.log(check(-1));\n",
        1,
        None,
    ),
    (
        "strict, the var is declared in cells 1..k",
        "'use strict';\nvar v = 1;\nfunction f() { return v; }\n\nconsole.log(f());\n",
        "'use strict';\nvar v = 1;\nfunction f() { return v; }\n\nvar v = 2;\nconsole.log(f());\n",
        1,
        "binding of its own",
    ),
    (
        "rule d: stale binding read by the new suffix",
        "console.log(1);\n\nlet x = 1;\n",
        "console.log(1);\n\nconsole.log(typeof x);\n",
        1,
        "declared `x`, the edited file does not",
    ),
    (
        "rule d: strict block function does not bind the stale var",
        "'use strict';\nconsole.log(1);\n\nvar f = 1;\n",
        "'use strict';\nconsole.log(1);\n\n{ function f() {} }\nconsole.log(typeof f);\n",
        1,
        "declared `f`, the edited file does not",
    ),
    (
        "block function of cells 1..k, Annex B decided by a later const",
        "{ function f() { return 1; } }\n\nconst f = 2;\n",
        "{ function f() { return 1; } }\n\ntry { console.log(f()); } catch (e) { 0; }\n",
        1,
        "declares function `f` in a block, and only the old rest",
    ),
    (
        "rule d: stale binding visible to eval in the new suffix",
        "console.log(1);\n\nvar x = 1;\n",
        "console.log(1);\n\nconsole.log(eval('typeof x'));\n",
        1,
        "calls eval",
    ),
    (
        "rule e: let becomes var",
        "console.log(1);\n\nlet y = 1;\n",
        "console.log(1);\n\nvar y = 2;\n",
        1,
        "redeclaration SyntaxError",
    ),
    (
        "function and var of one name in the suffix",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nvar f = 1;\nfunction f() {}\n",
        1,
        "a var of that name",
    ),
    (
        "strict directive added after cell 1",
        "'a';\n\nconsole.log(1);\n",
        "'a';\n\n'use strict';\nconsole.log(1);\n",
        1,
        "'use strict' directive changed",
    ),
    (
        "redeclared in the new suffix",
        "const a = 1;\n\nconsole.log(a);\n",
        "const a = 1;\n\nlet b = 1;\nconsole.log(a);\n\nlet b = 2;\n",
        1,
        "declares `b` twice (cells 2 and 3)",
    ),
    (
        "new suffix redeclares a name of cells 1..k",
        "const a = 1;\n\nconsole.log(a);\n",
        "const a = 1;\n\nvar a = 2;\n",
        1,
        "declares `a` twice",
    ),
    (
        "block function named like a let of cells 1..k",
        "let f = 1;\n\nconsole.log(f);\n",
        "let f = 1;\n\n{ function f() {} }\nconsole.log(f);\n",
        1,
        "declares `f` with a function in a block, which cell 1 already bound",
    ),
    (
        "var of cells 1..k declared again",
        "var count = 5;\n\nconsole.log(count);\n",
        "var count = 5;\n\nvar count = count + 1;\nconsole.log(count);\n",
        1,
        "declares `count` with var, which cell 1 already bound",
    ),
    (
        "module wrapper name declared again",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nconsole.log(typeof exports);\nvar exports = 1;\n",
        1,
        "declares `exports` with var, which node already bound",
    ),
    (
        "function and block function of one name in the suffix",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nfunction g() {}\nif (1) { function g() {} }\n",
        1,
        "a function in a block of that name",
    ),
    ("prefix changed", "let n = 1;\n\nn++;\n", "let n = 2;\n\nn++;\n", 1, "cell 1 changed"),
    (
        "cell k grew",
        "let n = 1;\n\nn++;\n",
        "let n = 1;\nn += 1;\n\nn++;\n",
        1,
        "cell 1 changed",
    ),
    ("no such cell", "let n = 1;\n", "let n = 1;\n", 3, "no code cell 3"),
    ("no pause 0", "let n = 1;\n", "let n = 1;\n", 0, "no pause 0"),
    ("syntax error", "let n = 1;\n\nn++;\n", "let n = 1;\n\nn++ +;\n", 1, "could not parse"),
    (
        "names the pause sites",
        "let n = 1;\n\nn++;\n",
        "let n = 1;\n\nvar __tonic__ = n;\n",
        1,
        "names __tonic__",
    ),
    (
        "ES module by syntax",
        "import fs from 'fs';\n\nconsole.log(1);\n",
        "import fs from 'fs';\n\nconsole.log(2);\n",
        1,
        None,
    ),
    (
        "becomes an ES module",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nawait 1;\n",
        1,
        "module kind changed to esm",
    ),
    (
        "an ES module's imports changed",
        "import fs from 'fs';\n\nconsole.log(1);\n",
        "import fs from 'fs';\n\nimport os from 'os';\nconsole.log(2);\n",
        1,
        "the imports changed",
    ),
    (
        "an ES module imports the same in another cell",
        "import fs from 'fs';\n\nconsole.log(1);\n\nimport os from 'os';\n",
        "import fs from 'fs';\n\nconsole.log(os.EOL);\n\nimport os from 'os';\n",
        1,
        None,
    ),
    (
        "an ES module exports from an edited cell",
        "export const a = 1;\n\nconsole.log(a);\n",
        "export const a = 1;\n\nexport const b = a;\n",
        1,
        "line 3 exports from a cell after cell 1",
    ),
    (
        "an ES module's edited cell names arguments",
        "import 'node:fs';\n\nconsole.log(1);\n",
        "import 'node:fs';\n\nconsole.log(typeof arguments);\n",
        1,
        "line 3 names `arguments`",
    ),
    (
        "an ES module's later cell reads an import",
        "import { sep } from 'path';\nconst s = () => sep;\n\nconsole.log(1);\n",
        "import { sep } from 'path';\nconst s = () => sep;\n\nconsole.log(s(), sep);\n",
        1,
        None,
    ),
    (
        "deletes a var of the suffix",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nvar b = 2;\nconsole.log(delete b, b);\n",
        1,
        "line 4 deletes a variable",
    ),
    (
        "deletes a parenthesized name",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nvar b = 2;\nconsole.log(delete (b));\n",
        1,
        "deletes a variable",
    ),
    ("deletes a property", "var o = {a: 1};\n\n1;\n", "var o = {a: 1};\n\ndelete o.a;\n", 1, None),
    (
        "declares its own eval",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nfunction eval(s) { return 0; }\nconsole.log(2);\n",
        1,
        "line 3 rebinds eval",
    ),
    (
        "an old version declared eval",
        "var eval = (s) => 0;\n\nconsole.log(2);\n",
        "var eval = (s) => 0;\n\nconsole.log(3);\n",
        1,
        "line 1 rebinds eval",
    ),
    (
        "assigns globalThis.eval",
        "console.log(1);\n\nconsole.log(2);\n",
        "console.log(1);\n\nglobalThis.eval = () => 0;\n",
        1,
        "rebinds eval",
    ),
    (
        "calls eval in a function",
        "function f(s) { return (0, eval)(s); }\n\nf('1');\n",
        "function f(s) { return (0, eval)(s); }\n\nf('2');\n",
        1,
        None,
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "k", "expected"),
    [c[1:] for c in CHECKS],
    ids=[c[0] for c in CHECKS],
)
def test_check(old: str, new: str, k: int, expected: str | None) -> None:
    reason = check([nb(old)], nb(new), k)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason, reason


def test_check_esm_by_extension() -> None:
    old, new = (
        nb("console.log(1);\n\nconsole.log(2);\n", "nb.mjs"),
        nb("console.log(1);\n\nconsole.log(3);\n", "nb.mjs"),
    )
    assert check([old], new, 1) is None


def test_keep_functions() -> None:
    old = nb("const g = greet;\n\nfunction greet() { return 1; }\nfunction other() {}\n")
    new = nb("const g = greet;\n\nfunction greet() { return 1; }\nfunction other() { 2 }\n")
    assert check([old], new, 1) is None
    assert keep_functions([old], new, 1) == {"greet"}
    source = suffix_source(new, 1, file="/x/nb.js", values=False, keep=frozenset({"greet"}))
    assert "greet" not in source and "function other() { 2 }" in source


def test_lineage_stale_binding_of_an_earlier_version() -> None:
    """v1 hoisted `let x` in cell 2; v2 (continued at 1) dropped it; v3 reads `x`."""
    v1 = nb("console.log(1);\n\nlet x = 1;\n\nconsole.log(2);\n\nconsole.log(3);\n")
    v2 = nb("console.log(1);\n\nconsole.log('no x');\n\nconsole.log(2);\n\nconsole.log(3);\n")
    v3 = nb("console.log(1);\n\nconsole.log('no x');\n\nconsole.log(2);\n\ntypeof x;\n")
    assert check([v1], v2, 1) is None
    assert check([v2], v3, 3) is None  # v2 alone never declared x
    reason = check([v1, v2], v3, 3)
    assert reason is not None and "`x`" in reason


def test_suffix_keeps_positions() -> None:
    src = (
        "const a = 'é😀';\n\n// %% two\nif (a) { return 1 }\n"
        "  const b = 2; return\n\nfunction f() { return 3 }\n"
    )
    new = nb(src)
    out = suffix_source(new, 1, file="/x/nb.js", values=True)
    body, _, trailer = out.rpartition("\n}\n")
    assert trailer == "//# sourceURL=/x/nb.js"
    assert body.startswith("__tonic_suffix_1__:{")
    lines = body.split("\n")
    assert lines[1:3] == ["", "// %% two"]  # pause site 1 was on line 2
    assert lines[3] == "if (a) { {      1;break __tonic_suffix_1__} }"
    assert lines[4] == "  const b = 2; {break __tonic_suffix_1__}"
    assert lines[6] == "function f() { return 3 }"  # a function's own return stays
    # then the trailing pause site's line, as `instrument` adds it
    site = pause_site(2, esm=False).decode().replace("return}", "break __tonic_suffix_1__}")
    assert lines[7:] == ["", site, ""]
    assert "return}" not in out


def test_suffix_of_typescript_finds_a_site_before_a_comment() -> None:
    """TypeScript's grammar takes a comment after a pause site on its line into the site's
    statement: the site is still found, and the comment stays in the suffix."""
    src = "// %% one\nlet n: number = 1;\n// %% two\nconsole.log(n as number);\n"
    out = suffix_source(nb(src, "nb.ts"), 1, file="/x/nb.ts", values=False)
    assert out.split("\n")[2:4] == ["// %% two", "console.log(n as number);"]


def test_suffix_rejects_a_missing_pause() -> None:
    with pytest.raises(ValueError):
        suffix_source(nb("let a = 1;\n"), 2, file="/x/nb.js", values=False)


# -- equality with node -----------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """A process started from versions[0], continued with versions[i] at pause ks[i-1]."""

    versions: tuple[str, ...]
    ks: tuple[int, ...]
    values: bool = False
    filename: str = "nb.js"


EDITS: dict[str, Edit] = {
    "later literal": Edit(
        ("let n = 1;\n\nconsole.log('n', n);\n", "let n = 1;\n\nconsole.log('n+1', n + 1);\n"),
        (1,),
    ),
    "later literal, with value captures": Edit(
        (
            "let n = 1;\n\nconsole.log('n', n);\nn\n",
            "let n = 1;\n\nconsole.log('n+1', n + 1);\nn + 1\n",
        ),
        (1,),
        values=True,
    ),
    "pending timers and microtasks": Edit(
        (
            "setTimeout(() => console.log('timer'), 0);\n"
            "Promise.resolve().then(() => console.log('micro'));\n"
            "process.nextTick(() => console.log('tick'));\n\nconsole.log('a');\n",
            "setTimeout(() => console.log('timer'), 0);\n"
            "Promise.resolve().then(() => console.log('micro'));\n"
            "process.nextTick(() => console.log('tick'));\n\nconsole.log('b');\n"
            "setImmediate(() => console.log('immediate'));\n",
        ),
        (1,),
    ),
    "top-level return": Edit(
        (
            "console.log('one');\n\nconsole.log('two');\n",
            "console.log('one');\n\nif (true) return;\n\nconsole.log('never');\n",
        ),
        (1,),
    ),
    "return with an argument in a loop": Edit(
        (
            "setTimeout(() => console.log('timer'));\n\nconsole.log(0);\n",
            "setTimeout(() => console.log('timer'));\n\n"
            "for (const x of [1, 2, 3]) {\n  if (x === 2) return console.log('ret', x);\n"
            "  console.log(x);\n}\n\nconsole.log('never');\n",
        ),
        (1,),
    ),
    "return of an object literal": Edit(
        (
            "let calls = 0;\nconst f = () => ++calls;\n\nconsole.log(0);\n",
            "let calls = 0;\nconst f = () => ++calls;\n\n"
            "try {\n  return {a: f(), b: f()}\n} finally {\n  console.log('calls', calls)\n}\n",
        ),
        (1,),
    ),
    "exports and module.exports": Edit(
        (
            "exports.a = 1;\n\nconsole.log('x');\n",
            "exports.a = 1;\n\nmodule.exports.b = 2;\n"
            "console.log(JSON.stringify(module.exports), this === module.exports);\n"
            "console.log(arguments.length, __filename.endsWith('nb.js'), typeof require);\n",
        ),
        (1,),
    ),
    "process.exit": Edit(
        (
            "process.on('exit', (c) => console.log('exit', c));\nsetTimeout(() => 1);\n\n"
            "console.log('x');\n",
            "process.on('exit', (c) => console.log('exit', c));\nsetTimeout(() => 1);\n\n"
            "console.log('y');\nprocess.exit(4);\n\nconsole.log('never');\n",
        ),
        (1,),
    ),
    "kept function keeps its identity": Edit(
        (
            "const first = greet;\nconsole.log(greet());\n\n"
            "function greet() { return 'hi'; }\n\nconsole.log(1);\n",
            "const first = greet;\nconsole.log(greet());\n\n"
            "function greet() { return 'hi'; }\n\nconsole.log(first === greet, greet());\n",
        ),
        (1,),
    ),
    "sloppy var and functions added": Edit(
        (
            "var total = 5;\n\nconsole.log(total);\n",
            "var total = 5;\n\nvar extra = 1;\nconsole.log(twice(total + extra), typeof extra);\n"
            "function twice(x) { return 2 * x; }\nsetTimeout(() => console.log(extra));\n",
        ),
        (1,),
    ),
    "strict file with lexical suffix": Edit(
        (
            "'use strict';\nconst base = 10;\n\nconsole.log(base);\n",
            "'use strict';\nconst base = 10;\n\nclass K {}\nconsole.log(twice(base), K.name);\n"
            "function twice(x) { return 2 * x; }\nconst later = 3;\n\n"
            "console.log(later, (function () { return this; })());\n",
        ),
        (1,),
    ),
    "strict file, kept function": Edit(
        (
            "'use strict';\nconst first = check;\nconsole.log(check(1));\n\n"
            "function check(x) { return x > 0; }\n",
            "'use strict';\nconst first = check;\nconsole.log(check(1));\n\n"
            "function check(x) { return x > 0; }\nconsole.log(first === check, check(-1));\n",
        ),
        (1,),
    ),
    "block functions": Edit(
        (
            "let f = 1;\n\nconsole.log(f);\n",
            "let f = 1;\n\n{ function g() { return 1; } }\nconsole.log(f, g());\n"
            "if (f) { function h() { return 2; } }\nconsole.log(h());\n",
        ),
        (1,),
    ),
    "error positions after non-ASCII text": Edit(
        (
            "const s = 'é😀';\n\nconsole.log(s);\n",
            "const s = 'é😀';\n\n// %% cell\nconst t = '😀😀'; try { null.x } catch (e) {\n"
            "  console.log(e.stack.split('\\n')[1].match(/:(\\d+:\\d+)\\)?$/)[1]) }\n",
        ),
        (1,),
    ),
    "later pauses answered go": Edit(
        (
            "let n = 1;\n\nconsole.log(n);\n",
            "let n = 1;\n\nn += 1;\n\nconsole.log(n);\n\n"
            "if (n > 1) return;\n\nconsole.log('no');\n",
        ),
        (1,),
    ),
    "suffix of a suffix": Edit(
        (
            "let n = 1;\nsetTimeout(() => console.log('t', n));\n\nconsole.log(n);\n",
            "let n = 1;\nsetTimeout(() => console.log('t', n));\n\nn += 1;\nlet m = 10;\n\n"
            "console.log(n, m);\n\nconsole.log('old');\n",
            "let n = 1;\nsetTimeout(() => console.log('t', n));\n\nn += 1;\nlet m = 10;\n\n"
            "console.log(n, m);\n\nn += m;\nvar v = 7;\n\nconsole.log('new', n, v);\nreturn;\n",
        ),
        (1, 3),
    ),
}

# Errors and stacks in continued code: node's report, frames mended by the kernel.
TRACE = "console.log(new Error('x').stack.split('\\n').slice(0, 4).join('\\n'));\n"


def _limit_then(code: str) -> Edit:
    """A sloppy notebook declaring `limit` whose second cell becomes `code`."""
    first = "const limit = 1;\n\n"
    return Edit((first + "console.log(1);\n", first + code + "\n"), (1,))


ERROR_EDITS: dict[str, Edit] = {
    "uncaught error from a function in the suffix": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nfunction boom() {\n  null.boom;\n}\n\nconsole.log(a);\nboom();\n",
        ),
        (1,),
    ),
    "uncaught error at the top of the suffix": Edit(
        ("const a = 1;\n\nconsole.log(a);\n", "const a = 1;\n\nconsole.log(a);\n\nnull.boom;\n"),
        (1,),
    ),
    "uncaught error in a callback made in the suffix": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nsetTimeout(() => {\n  null.boom;\n}, 1);\n",
        ),
        (1,),
    ),
    "uncaught error after two continuations": Edit(
        (
            "'use strict';\nconst a = 1;\n\nconsole.log(a);\n\nconsole.log(2);\n",
            "'use strict';\nconst a = 1;\n\nconsole.log(a, 'b');\n\nconsole.log(3);\n",
            "'use strict';\nconst a = 1;\n\nconsole.log(a, 'b');\n\nnull.boom;\n",
        ),
        (1, 2),
    ),
    "a misspelt variable in sloppy code": _limit_then("console.log('limit', limt);"),
    "a misspelt object in sloppy code": _limit_then("consle.log('limit', limit);"),
    "a misspelt name deep in an expression": _limit_then("const v = { a: [1, limit + 2 * limt] };"),
    "a misspelt constructor": _limit_then("console.log(1, new Limit(limit));"),
    "a misspelt name in a function called later": _limit_then(
        "function f() {\n  return limt * 2;\n}\nconsole.log(f());"
    ),
    "a misspelt name in a callback": _limit_then("setTimeout(() => console.log(limt), 1);"),
    "a thrown string": Edit(
        ("const a = 1;\n\nconsole.log(a);\n", "const a = 1;\n\nthrow 'text';\n"),
        (1,),
    ),
    "an error caught by a handler of the notebook's": Edit(
        (
            "process.on('uncaughtException', (e) => console.log(e.stack));\n\nconsole.log(1);\n",
            "process.on('uncaughtException', (e) => console.log(e.stack));\n\n"
            "console.log(2);\nnull.x;\n",
        ),
        (1,),
    ),
    "stacks of errors made in the suffix": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\n" + TRACE + "[1].forEach(() => { " + TRACE.rstrip("\n") + " });\n"
            "const o = { m() { return new Error('m').stack.split('\\n')[1]; } };\n"
            "console.log(o.m());\n"
            "class K { constructor() { this.s = new Error().stack.split('\\n')[1]; } }\n"
            "console.log(new K().s, new (class { constructor() { this.s = new Error().stack"
            ".split('\\n')[1]; } })().s);\n"
            "const E = new (require('events'))();\n"
            "E.on('x', function () { console.log(new Error().stack.split('\\n')[1]); });\n"
            "E.emit('x');\n"
            "setTimeout(() => console.log(new Error().stack.split('\\n')[1]), 1);\n"
            "setTimeout(function named() { console.log(new Error().stack.split('\\n')[1]); }, 1);\n"
            "Promise.resolve().then(() => console.log(new Error().stack.split('\\n')[1]));\n"
            "(async () => { await null; console.log(new Error().stack); })();\n",
        ),
        (1,),
    ),
    "console.trace in the suffix, after two continuations": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n\nconsole.log(2);\n",
            "const a = 1;\n\nconsole.log(a, 'b');\n\nconsole.log(3);\n",
            "const a = 1;\n\nconsole.log(a, 'b');\n\nconsole.trace('here', a);\n"
            "function deep(n) { if (n) return deep(n - 1); console.trace('deep'); }\ndeep(3);\n",
        ),
        (1, 2),
    ),
    "a deep stack reaches Error.stackTraceLimit": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nfunction deep(n) { if (n) return deep(n - 1); null.x; }\ndeep(7);\n",
        ),
        (1,),
    ),
}


@pytest.mark.parametrize("edit", list(ERROR_EDITS.values()), ids=list(ERROR_EDITS))
def test_error_in_suffix_equals_node(edit: Edit, tmp_path: Path) -> None:
    """The report of an uncaught error, err.stack and console.trace are node's."""
    path = tmp_path / "nb.js"
    got = continued(edit, path)
    _assert_same(got, plain_node(path))


# Where a continued run still differs from node (listed in the README).
ERRORS: dict[str, tuple[Edit, str]] = {
    "undeclared function called in sloppy code of the suffix": (
        Edit(
            (
                "const limit = 1;\n\nconsole.log(1);\n",
                "const limit = 1;\n\nconsole.log('limit', check(limit));\n",
            ),
            (1,),
        ),
        "V8 looks free names up dynamically in sloppy eval code and reports a ReferenceError "
        "for a called name at the name (column 22), where node reports the call before it "
        "(column 9)",
    ),
    "the notebook's own Error.prepareStackTrace": (
        Edit(
            (
                "const a = 1;\n\nconsole.log(a);\n",
                "const a = 1;\n\nError.prepareStackTrace = (e, t) => t.join('|');\n"
                "console.log(new Error().stack);\n",
            ),
            (1,),
        ),
        "V8's call sites of eval'd code name it `eval`, and the pause site adds its frames",
    ),
}


class FramesDiffer(AssertionError):
    """Only stack frames differ (the exit code is node's)."""


@dataclass(frozen=True)
class Output:
    stdout: bytes
    stderr: bytes
    code: int


def _joined(result: RunResult) -> Output:
    out, err = bytearray(), bytearray()
    for cell in result.cells:
        out += cell.stdout
        err += cell.stderr
    out += result.tail.stdout
    err += result.tail.stderr
    return Output(bytes(out), bytes(err), result.exit_code)


def continued(edit: Edit, path: Path) -> Output:
    """Start node on versions[0] (as the file at `path`), continue at each k with the next
    version's suffix; `path` holds the newest version, as after the user's last edit."""
    books = [nb(v, edit.filename) for v in edit.versions]
    newest = books[-1]
    path.write_text(edit.versions[-1])
    answers: dict[int, Command] = {}
    for i, k in enumerate(edit.ks, start=1):
        lineage, new = books[:i], books[i]
        assert check(lineage, new, k) is None, check(lineage, new, k)
        keep = keep_functions(lineage, new, k)
        source = suffix_source(new, k, file=str(path), values=edit.values, keep=keep)
        answers[k] = Eval(source, check=edit.versions[i])
    first = instrument(books[0], values=edit.values)
    # Cells are recorded against the newest version, whose pauses every later one hits.
    plan = Instrumented(first.source, instrument(newest).pauses, ())
    program = Program(notebook=newest, path=path, instrumented=plan)
    options = KernelOptions(on_pause=lambda k: answers.get(k, GO))
    result = run_kernel(program, NullSink(), engine="replay", timeout=20, options=options)
    return _joined(result)


def plain_node(path: Path) -> Output:
    proc = subprocess.run(
        ["node", str(path)], capture_output=True, stdin=subprocess.DEVNULL, timeout=20
    )
    return Output(proc.stdout, proc.stderr, proc.returncode)


def _diff(got: bytes, want: bytes) -> str:
    return "\n".join(
        difflib.unified_diff(
            want.decode(errors="replace").splitlines(),
            got.decode(errors="replace").splitlines(),
            "node",
            "continued",
            lineterm="",
        )
    )


def _assert_same(got: Output, want: Output) -> None:
    assert got.stdout == want.stdout, _diff(got.stdout, want.stdout)
    assert got.stderr == want.stderr, _diff(got.stderr, want.stderr)
    assert got.code == want.code


@pytest.mark.parametrize("edit", list(EDITS.values()), ids=list(EDITS))
def test_continued_run_equals_node(edit: Edit, tmp_path: Path) -> None:
    path = tmp_path / edit.filename
    got = continued(edit, path)
    _assert_same(got, plain_node(path))


TYPESCRIPT_EDITS: dict[str, Edit] = {
    "types in the suffix": Edit(
        (
            "interface P { x: number }\nconst p: P = { x: 1 };\n\nconsole.log(p.x as number);\n",
            "interface P { x: number }\nconst p: P = { x: 1 };\n\n"
            "const same = <T,>(v: T): T => v;\ntype N = number;\n"
            "console.log(same<N>(p.x + 1)!, p satisfies P);\n",
        ),
        (1,),
        filename="nb.ts",
    ),
    "a comment after the pause site": Edit(
        (
            "// %% one\nlet n: number = 1;\n// %% two\nconsole.log(n);\n",
            "// %% one\nlet n: number = 1;\n// %% two\nconsole.log((n as number) + 1);\n",
        ),
        (1,),
        filename="nb.ts",
    ),
    "a stack in the suffix (node names a stripped file)": Edit(
        (
            "const a: number = 1;\n\nconsole.log(a);\n",
            "const a: number = 1;\n\nconsole.log(new Error('e').stack!.split('\\n')[1]);\n",
        ),
        (1,),
        filename="nb.cts",
    ),
    "an ES module with types, awaits and import.meta": Edit(
        (
            "import type { Stats } from 'node:fs';\nconst n: number = 1;\n\nconsole.log(n);\n",
            "import type { Stats } from 'node:fs';\nconst n: number = 1;\n\n"
            "const s: Stats | null = null;\nawait new Promise<void>((r) => setTimeout(r, 1));\n"
            "console.log(n + 1, s, import.meta.url.endsWith('nb.mts'));\n"
            "throw new Error(`typed ${n as number}`);\n",
        ),
        (1,),
        filename="nb.mts",
    ),
    "an uncaught error in typed code": Edit(
        (
            "const a: number = 1;\n\nconsole.log(a);\n",
            "const a: number = 1;\n\n"
            "function boom(why: string): never {\n  throw new TypeError(why);\n}\n"
            "boom(`bad ${a as number}`);\n",
        ),
        (1,),
        filename="nb.ts",
    ),
}


MODULE_EDITS: dict[str, Edit] = {
    "a later literal": Edit(
        ("let n = 1;\n\nconsole.log('n', n);\n", "let n = 1;\n\nconsole.log('n+1', n + 1);\n"),
        (1,),
        filename="nb.mjs",
    ),
    "top-level await, timers and microtasks": Edit(
        (
            "setTimeout(() => console.log('timer'), 0);\n"
            "Promise.resolve().then(() => console.log('micro'));\n\nconsole.log('a');\n",
            "setTimeout(() => console.log('timer'), 0);\n"
            "Promise.resolve().then(() => console.log('micro'));\n\n"
            "console.log(await Promise.resolve('b'));\n"
            "await new Promise((r) => setTimeout(r, 2));\nconsole.log('after');\n"
            "process.nextTick(() => console.log('tick'));\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "live bindings, a dynamic import and import.meta": Edit(
        (
            "import { EventEmitter } from 'node:events';\nconst e = new EventEmitter();\n\n"
            "console.log(1);\n",
            "import { EventEmitter } from 'node:events';\nconst e = new EventEmitter();\n\n"
            "const { EventEmitter: E2 } = await import('node:events');\n"
            "console.log(E2 === EventEmitter, import.meta.url.endsWith('nb.mjs'));\n"
            "console.log(typeof import.meta.resolve, this);\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "an uncaught error before and after an await": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nfunction boom() {\n  throw new TypeError('bad ' + a);\n}\n"
            "console.log(new Error('here').stack);\nawait 0;\nboom();\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "an error thrown before any await": Edit(
        ("const a = 1;\n\nconsole.log(a);\n", "const a = 1;\n\nnull.x;\n"),
        (1,),
        filename="nb.mjs",
    ),
    "an unhandled rejection and an exit code": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nprocess.exitCode = 3;\nPromise.reject(new RangeError('r'));\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "a hoisted function kept, a class and a loop with await": Edit(
        (
            "console.log(f());\n\nfunction f() { return 1; }\nconsole.log(2);\n",
            "console.log(f());\n\nfunction f() { return 1; }\nclass K { m() { return f(); } }\n"
            "for await (const x of [1, 2]) console.log(x, new K().m());\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "continued twice": Edit(
        (
            "let n = 1;\n\nconsole.log(n);\n\nconsole.log('end');\n",
            "let n = 1;\n\nconsole.log(n + 1);\nawait 0;\n\nconsole.log('end');\n",
            "let n = 1;\n\nconsole.log(n + 1);\nawait 0;\n\n"
            "console.log('end', new Error('x').stack);\n",
        ),
        (1, 2),
        filename="nb.mjs",
    ),
    "process.exit in an edited cell": Edit(
        (
            "setTimeout(() => console.log('never'), 50);\n\nconsole.log(1);\n",
            "setTimeout(() => console.log('never'), 50);\n\n"
            "process.on('exit', (c) => console.log('exit', c));\nprocess.exit(4);\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
}


@pytest.mark.parametrize("edit", list(MODULE_EDITS.values()), ids=list(MODULE_EDITS))
def test_continued_module_equals_node(edit: Edit, tmp_path: Path) -> None:
    """An ES module goes on in an async arrow function the pause site awaits."""
    path = tmp_path / edit.filename
    _assert_same(continued(edit, path), plain_node(path))


LEFT_AWAITING: dict[str, Edit] = {
    "at the top level": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nconsole.log('waits');\nawait new Promise(() => {});\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "in a block, after a tab, in a loop": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\nfor (const x of [1]) {\n\tconst y = x + await 0;\n"
            "\tif (y) { const z =   await new Promise(() => {}); }\n}\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
    "in an awaited function, continued twice": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n\nconsole.log('b');\n",
            "const a = 1;\n\nconsole.log(a + 1);\n\nconsole.log('b');\n",
            "const a = 1;\n\nconsole.log(a + 1);\n\n"
            "async function never() { await new Promise(() => {}); }\nawait never();\n",
        ),
        (1, 2),
        filename="nb.mjs",
    ),
    "until a timer settles it": Edit(
        (
            "const a = 1;\n\nconsole.log(a);\n",
            "const a = 1;\n\n"
            "process.on('beforeExit', () => console.log('before', process.exitCode));\n"
            "await new Promise((r) => setTimeout(r, 5));\nconsole.log('settled');\n",
        ),
        (1,),
        filename="nb.mjs",
    ),
}


@pytest.mark.parametrize("edit", list(LEFT_AWAITING.values()), ids=list(LEFT_AWAITING))
def test_a_continued_module_left_awaiting(edit: Edit, tmp_path: Path) -> None:
    """Exit code 13 and node's warning (node >= 22) at the edited cells' pending await."""
    path = tmp_path / edit.filename
    _assert_same(continued(edit, path), plain_node(path))


@pytest.mark.skipif(not node_strips_types(), reason="this node does not run TypeScript")
@pytest.mark.parametrize("edit", list(TYPESCRIPT_EDITS.values()), ids=list(TYPESCRIPT_EDITS))
def test_continued_typescript_equals_node(edit: Edit, tmp_path: Path) -> None:
    """node strips the types of the file it compiles; the kernel those of the suffix."""
    path = tmp_path / edit.filename
    _assert_same(continued(edit, path), plain_node(path))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            edit, marks=pytest.mark.xfail(reason=why, raises=FramesDiffer, strict=True), id=name
        )
        for name, (edit, why) in ERRORS.items()
    ],
)
def test_frames_still_differ(edit: Edit, tmp_path: Path) -> None:
    """The exit code is node's; stack frames are not (each case says why)."""
    path = tmp_path / "nb.js"
    got = continued(edit, path)
    want = plain_node(path)
    assert got.code == want.code
    for mine, node in ((got.stdout, want.stdout), (got.stderr, want.stderr)):
        if mine != node:
            raise FramesDiffer(_diff(mine, node))


# -- names a sloppy suffix calls that nothing declares (the kernel checks them) ----------

FREE: list[tuple[str, str, tuple[str, ...] | None]] = [
    (
        "declared and global names",
        "const a = 1;\n\nconsole.log(a, Math.max(1), parseInt('1'));\n",
        ("parseInt",),
    ),
    ("a misspelt variable is not called", "const total = 1;\n\nconsole.log(totl);\n", ()),
    ("a misspelt object is not called", "1;\n\nconsle.log(1); new Totl();\n", ()),
    ("a misspelt function", "const total = 1;\n\nconsole.log(1, totl(2));\n", ("totl",)),
    (
        "calls of every form",
        "1;\n\n(f)(1); ((g))(1); h?.(1); tag`t`; (0, k)(1);\n",
        ("f", "g", "h", "tag"),
    ),
    ("typeof guard", "1;\n\nif (typeof window !== 'undefined') x();\n", ("x",)),
    (
        "bound anywhere",
        "1;\n\nfunction f(p, {q}, [r], ...s) { return p + q + r + s + arguments.length; }\n"
        "const g = (t) => t; try { g(1) } catch (e) { e } for (const u of [1]) u;\n"
        "class C {} import('x'); module.exports = f(exports, require, __dirname);\n",
        (),
    ),
    ("strict code is not checked", "'use strict';\n1;\n\nnope();\n", None),
    ("shorthand property", "1;\n\nconsole.log({ nope });\n", ()),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in FREE], ids=[c[0] for c in FREE])
def test_free_names(source: str, expected: tuple[str, ...] | None) -> None:
    assert free_names(nb(source), 1) == expected
