"""Random edits to percent-format notebooks, for the edit-sequence differential test."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

MARK = "// %%"
NUMBER = re.compile(r"(?<![\w.'\"])\d+(?![\w.'\"])")


def split(text: str) -> tuple[str, list[str]]:
    """(head before the first marker, cells each starting with its marker line)."""
    pieces = re.split(r"(?m)^(?=// %%)", text)
    return pieces[0], pieces[1:]


def join(head: str, cells: list[str]) -> str:
    return head + "".join(c if c.endswith("\n") else c + "\n" for c in cells)


def change_literal(rng: random.Random, text: str) -> str | None:
    head, cells = split(text)
    order = list(range(len(cells)))
    rng.shuffle(order)
    for i in order:
        marker, _, body = cells[i].partition("\n")
        # Timer delays stay: timers a few ms apart in different cells race on load even
        # under node (a resumed run also spends about a millisecond compiling the edit).
        found = [
            m
            for m in NUMBER.finditer(body)
            if "setTimeout" not in body[body.rfind("\n", 0, m.start()) + 1 : m.end()]
        ]
        if found:
            m = rng.choice(found)
            new = str(int(m.group()) + rng.randint(1, 9))
            cells[i] = marker + "\n" + body[: m.start()] + new + body[m.end() :]
            return join(head, cells)
    return None


def _insert(rng: random.Random, text: str, label: str, bodies: Callable[[int], list[str]]) -> str:
    """A new cell `// %% LABEL N` (after the head), one of `bodies(N)`."""
    head, cells = split(text)
    n = rng.randint(1, 999)
    body = rng.choice(bodies(n))
    cells.insert(rng.randint(1, len(cells)), f"{MARK} {label} {n}\n{body}\n")
    return join(head, cells)


def add_cell(rng: random.Random, text: str) -> str | None:
    return _insert(rng, text, "added", _added)


def _added(n: int) -> list[str]:
    return [
        f"console.log('added {n}');\n",
        f"var added{n} = {n};\nconsole.log('var', added{n});\n",
        f"const c{n} = [{n}, {n + 1}].map((x) => x * 2);\nconsole.log(c{n}.join('-'));\n",
        f"console.log('rand', Math.random() < 2, {n});\n",
        # The same delay as the fixtures' timers (see the README: time spent at
        # pauses moves timers of different delays against each other).
        f"setTimeout(() => console.log('late {n}'), 5);\n",
    ]


def remove_cell(rng: random.Random, text: str) -> str | None:
    head, cells = split(text)
    if len(cells) < 3:
        return None
    del cells[rng.randint(1, len(cells) - 1)]
    return join(head, cells)


def swap_cells(rng: random.Random, text: str) -> str | None:
    head, cells = split(text)
    if len(cells) < 3:
        return None
    i = rng.randint(1, len(cells) - 2)
    cells[i], cells[i + 1] = cells[i + 1], cells[i]
    return join(head, cells)


def change_function(rng: random.Random, text: str) -> str | None:
    """Edit the body of a function declaration (which earlier cells may call)."""
    found = list(re.finditer(r"(?m)^function \w+\([^)]*\) \{\n  return ", text))
    if not found:
        return None
    m = rng.choice(found)
    return text[: m.end()] + f"{rng.randint(1, 9)} + " + text[m.end() :]


def toggle_strict(rng: random.Random, text: str) -> str | None:
    if text.startswith("'use strict';\n"):
        return text[len("'use strict';\n") :]
    return "'use strict';\n" + text


# Statements that throw, as a typo or a wrong assumption would (no ReferenceError of an
# undeclared name: see the README on sloppy code).
THROWS = [
    "null.boom;",
    "throw new Error('edited');",
    "JSON.parse('{');",
    "[1, 2].map((x) => x.y.z);",
    "(function inner() { return undefined.length; })();",
    "Promise.reject(new RangeError('later'));",
]


def make_throw(rng: random.Random, text: str) -> str | None:
    """The last cell now throws (the most common edit of all: a mistake)."""
    head, cells = split(text)
    if not cells:
        return None
    cells[-1] = cells[-1].rstrip("\n") + "\n" + rng.choice(THROWS) + "\n"
    return join(head, cells)


EDITS: dict[str, Callable[[random.Random, str], str | None]] = {
    "throw": make_throw,
    "literal": change_literal,
    "add": add_cell,
    "remove": remove_cell,
    "swap": swap_cells,
    "function": change_function,
    "strict": toggle_strict,
}
WEIGHTS = {"throw": 2, "literal": 5, "add": 3, "remove": 2, "swap": 2, "function": 2, "strict": 1}


def add_module_cell(rng: random.Random, text: str) -> str | None:
    """An ES module's own kinds of cell: awaits, dynamic imports, import.meta; a static
    import (which node links before the first cell: that edit runs afresh)."""
    return _insert(rng, text, "module", _module_added)


def _module_added(n: int) -> list[str]:
    return [
        f"const w{n} = await new Promise((r) => setTimeout(() => r({n}), 2));\n"
        f"console.log('awaited', w{n});\n",
        f"const {{ greet: g{n} }} = await import('./esm_helper.mjs');\nconsole.log(g{n}('{n}'));\n",
        f"console.log('meta', import.meta.url.endsWith('.mjs'), {n});\n",
        f"for await (const x of [Promise.resolve({n})]) console.log('for await', x);\n",
        f"import {{ greet as s{n} }} from './esm_helper.mjs';\nconsole.log(s{n}('{n}'));\n",
    ]


MODULE_EDITS: dict[str, Callable[[random.Random, str], str | None]] = {
    **EDITS,
    "module-add": add_module_cell,
}
MODULE_WEIGHTS = {**WEIGHTS, "module-add": 3}


def random_edit(rng: random.Random, text: str, *, module: bool = False) -> tuple[str, str]:
    edits, weights = (MODULE_EDITS, MODULE_WEIGHTS) if module else (EDITS, WEIGHTS)
    names = list(weights)
    for _ in range(20):
        name = rng.choices(names, weights=[weights[n] for n in names])[0]
        new = edits[name](rng, text)
        if new is not None and new != text:
            return name, new
    return "literal", text + f"\n{MARK}\nconsole.log({rng.randint(1, 99)});\n"
