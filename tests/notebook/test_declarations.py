"""The one walker of top-level declarations (cells.py's and continuation's), as a table:
each statement, the bindings it adds to module scope, and what the options add."""

from __future__ import annotations

import pytest

from tonic.notebook.declarations import Binding, declared
from tonic.notebook.syntax import parse_tree, text


def bindings(source: str, typescript: bool = False, **options: bool) -> list[Binding]:
    root = parse_tree(source.encode(), typescript).root_node
    assert not root.has_error, source
    return [b for stmt in root.named_children for b in declared(stmt, **options)]


def show(source: str, typescript: bool = False, **options: bool) -> str:
    """`name:kind` for each binding, in order; a `*` marks a function in a block."""
    found = bindings(source, typescript, **options)
    return " ".join(f"{text(b.name)}:{b.kind}{'*' * b.block}" for b in found)


# (source, its bindings, with block_functions=True where that differs)
ROWS: list[tuple[str, str, str | None]] = [
    # functions, generators, classes
    ("function f() {}", "f:function", None),
    ("async function f() {}", "f:function", None),
    ("function* g() {}", "g:function", None),
    ("async function* g() {}", "g:function", None),
    ("class C {}", "C:class", None),
    ("function f() { var inner; function nested() {} }", "f:function", None),
    ("class C { m() { var inner; } static { var s; function t() {} } }", "C:class", None),
    # let, const, var, with destructuring patterns
    ("let a = 1, b;", "a:let b:let", None),
    ("const a = 1;", "a:const", None),
    ("var a = 1, b = 2;", "a:var b:var", None),
    ("let {a, b: c, d = 1, ...e} = o;", "a:let c:let d:let e:let", None),
    ("const [a, , b = 2, [c], {d}, ...e] = o;", "a:const b:const c:const d:const e:const", None),
    ("var {a: {b}} = o, [c] = p;", "b:var c:var", None),
    ("var a = function b() {};", "a:var", None),
    ("const f = function () { var inner; };", "f:const", None),
    ("const f = () => { var inner; };", "f:const", None),
    # a var anywhere outside functions is module scope; let, const and class in a block not
    ("for (var i = 0, j; i < 1; i++) {}", "i:var j:var", None),
    ("for (var k in o) {}", "k:var", None),
    ("for (var [k, v] of o) {}", "k:var v:var", None),
    ("for (let k of o) { var inner = k; }", "inner:var", None),
    ("for (const k in o) {}", "", None),
    ("if (x) { var a = 1; } else { var b; }", "a:var b:var", None),
    ("while (x) { var a; }", "a:var", None),
    ("do { var a; } while (x);", "a:var", None),
    ("try { var a; } catch (e) { var b; } finally { var c; }", "a:var b:var c:var", None),
    ("switch (x) { case 1: var a; }", "a:var", None),
    ("label: { var a; }", "a:var", None),
    ("{ let a; const b = 1; class C {} var d; }", "d:var", None),
    # functions declared in blocks: sloppy code hoists them as vars (Annex B)
    ("{ function f() {} }", "", "f:var*"),
    ("if (x) function f() {}", "", "f:var*"),
    ("if (x) { function f() {} } else { function* g() {} }", "", "f:var* g:var*"),
    ("{ async function f() {} }", "", "f:var*"),
    ("label: function f() {}", "", "f:var*"),
    ("switch (x) { case 1: function f() {} }", "", "f:var*"),
    ("{ { function deep() { function inner() {} } } }", "", "deep:var*"),
    ("{ var a; function f() {} } var b;", "a:var b:var", "a:var f:var* b:var"),
    ("{ class C { m() { function f() {} } } }", "", None),
    # imports
    ("import x from 'm';", "x:import", None),
    ("import * as ns from 'm';", "ns:import", None),
    ("import {a, b as c} from 'm';", "a:import c:import", None),
    ("import x, {a as b} from 'm';", "x:import b:import", None),
    ("import x, * as ns from 'm';", "x:import ns:import", None),
    ("import {'s t' as u} from 'm';", "u:import", None),
    ("import {default as d} from 'm';", "d:import", None),
    ("import 'm';", "", None),
    ("import x from 'm' with {type: 'json'};", "x:import", None),
    # exports: what they declare
    ("export function f() {}", "f:function", None),
    ("export class C {}", "C:class", None),
    ("export const a = 1, {b} = o;", "a:const b:const", None),
    ("export let a;", "a:let", None),
    ("export var a;", "a:var", None),
    ("export default function f() {}", "f:function", None),
    ("export default class C {}", "C:class", None),
    ("export default function () {}", "", None),
    ("export default 1;", "", None),
    ("export {a, b as c};", "", None),
    ("export * from 'm';", "", None),
    ("export * as ns from 'm';", "", None),
    ("export {a} from 'm';", "", None),
    # no declaration
    ("x = 1;", "", None),
    ("console.log(a);", "", None),
    ("// function f() {}", "", None),
]

# (source, its bindings with import_identifiers=True: every identifier of the statement)
IMPORT_ROWS: list[tuple[str, str]] = [
    ("import x from 'm';", "x:import"),
    ("import * as ns from 'm';", "ns:import"),
    ("import {a, b as c} from 'm';", "a:import b:import c:import"),
    ("import x, {a as b} from 'm';", "x:import a:import b:import"),
    ("import {'s t' as u} from 'm';", "u:import"),
    ("import {default as d} from 'm';", "d:import"),
    ("import 'm';", ""),
]


@pytest.mark.parametrize(("source", "expected", "with_blocks"), ROWS, ids=[r[0] for r in ROWS])
def test_declared(source: str, expected: str, with_blocks: str | None) -> None:
    assert show(source) == expected
    assert show(source, block_functions=True) == (expected if with_blocks is None else with_blocks)
    if not source.startswith("import"):
        assert show(source, import_identifiers=True) == expected


@pytest.mark.parametrize(("source", "expected"), IMPORT_ROWS, ids=[r[0] for r in IMPORT_ROWS])
def test_import_identifiers(source: str, expected: str) -> None:
    assert show(source, import_identifiers=True) == expected
    assert show(source, import_identifiers=True, block_functions=True) == expected


@pytest.mark.parametrize("source", [r[0] for r in ROWS], ids=[r[0] for r in ROWS])
def test_declaring_nodes(source: str) -> None:
    """A function's or class's binding (a block function's too) carries its declaration,
    whose name it is; the others carry none."""
    for b in bindings(source, block_functions=True):
        if b.kind in ("function", "class") or b.block:
            assert b.declaration is not None
            assert b.declaration.type.endswith("_declaration")
            assert b.declaration.child_by_field_name("name") == b.name
        else:
            assert b.declaration is None
            assert b.name.type in ("identifier", "shorthand_property_identifier_pattern")


# TypeScript (tree-sitter's TypeScript grammar): what node runs once the types are gone.
TYPESCRIPT_ROWS: list[tuple[str, str]] = [
    ("abstract class A { abstract m(): void }", "A:class"),
    ("class C<T> implements I { private x: T; constructor(x: T) { this.x = x } }", "C:class"),
    ("interface I { a: number }", ""),
    ("type T = { a: number };", ""),
    ("declare const d: number;", ""),
    ("declare var v: number;", ""),
    ("declare function f(a: string): void;", ""),
    ("function f(a: string): void;", ""),  # an overload's signature
    ("function g<T>(a: T): T { var inner: T = a; return inner }", "g:function"),
    ("let a: number = 1, b: string;", "a:let b:let"),
    ("const { x, y }: { x: number; y: number } = o;", "x:const y:const"),
    ("var n = o as unknown as number;", "n:var"),
    ("export type E = string;", ""),
    ("export interface J {}", ""),
    ("import type { K } from 'm';", "K:import"),
]


@pytest.mark.parametrize(
    ("source", "expected"), TYPESCRIPT_ROWS, ids=[r[0] for r in TYPESCRIPT_ROWS]
)
def test_declared_in_typescript(source: str, expected: str) -> None:
    assert show(source, typescript=True) == expected
