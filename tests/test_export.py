"""`tonic export`: the package it renders, the real npm round trip (pack, install,
require), ignore rules (with and without git), npm names, and its refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, Outcome, tonic
from tonic.export.ignore import IgnoreRules
from tonic.export.names import npm_name_problem, sanitize, version_problem
from tonic.export.secrets import can_be_secret, dotenv_entries, dotenv_files

PROJECT = FIXTURES / "export" / "project"
ESM = FIXTURES / "export" / "esm"
FAKE_DEP = "tonic-fake-dep"
FAKE_VERSION = "1.4.2"
NPM_OFFLINE = ["--offline", "--no-audit", "--no-fund", "--loglevel=error"]


def fake_dep(root: Path) -> None:
    """An installed package that exists nowhere else: written into node_modules."""
    pkg = root / "node_modules" / FAKE_DEP
    pkg.mkdir(parents=True)
    manifest = {"name": FAKE_DEP, "version": FAKE_VERSION, "main": "index.js"}
    (pkg / "package.json").write_text(json.dumps(manifest))
    (pkg / "index.js").write_text("exports.label = (s) => 'fake:' + s;\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    fake_dep(root)
    (root / ".env").write_text("API_KEY=do-not-ship\n")
    return root


def export(*args: str, cwd: Path) -> Outcome:
    return tonic("export", *args, cwd=cwd, timeout=120)


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def node_version() -> str:
    return run(["node", "--version"], Path.cwd()).stdout.strip().lstrip("v")


def test_package_contents(project: Path) -> None:
    got = export("analysis.js", "-o", "out", cwd=project)
    assert got.code == 0, got.describe()
    out = project / "out"
    manifest = json.loads((out / "package.json").read_text())
    assert manifest["name"] == "analysis"  # the notebook's file name
    assert manifest["version"] == "1.2.0"  # the project's version
    assert manifest["main"] == "./analysis.js"
    assert manifest["exports"]["."] == "./analysis.js"
    assert manifest["type"] == "commonjs"
    assert manifest["dependencies"] == {FAKE_DEP: FAKE_VERSION}  # installed, not ^1.0.0
    assert manifest["engines"] == {"node": f">={node_version()}"}
    assert manifest["files"] == ["analysis.js", "data/trails.json", "helpers.js", "lib/format.js"]
    shipped = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert shipped == sorted([*manifest["files"], "README.md", "package.json"])
    for rel in manifest["files"]:
        assert (out / rel).read_bytes() == (project / rel).read_bytes()  # unchanged
    readme = (out / "README.md").read_text()
    for part in (
        "# analysis",
        "A few hiking trails, summarized.",  # prose cell as text
        "### Summarize",
        "```js\nconst path = require('node:path');",  # code
        "```text\ntrails: 3\n```",  # recorded output
        "=> { count: 3, meanKm: 9.25, label: 'fake:trails' }",  # recorded value
        f"| {FAKE_DEP} | {FAKE_VERSION} |",
    ):
        assert part in readme, part
    assert "// %%" not in readme
    assert not list(project.glob(".out.tonic-*"))  # no staging folder left behind


def test_npm_pack_install_require_round_trip(project: Path, tmp_path: Path) -> None:
    got = export(
        "analysis.js", "helpers.js", "-o", "out", "--name", "trail-notes", "--tarball", cwd=project
    )
    assert got.code == 0, got.describe()
    tarball = project / got.stdout.decode().strip().splitlines()[-1]
    assert tarball.name == "trail-notes-1.2.0.tgz" and tarball.is_file()

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    fake_dep(consumer)  # what npm would fetch from the registry
    installed = run(["npm", "install", *NPM_OFFLINE, str(tarball)], consumer)
    assert installed.returncode == 0, installed.stderr

    show = "console.log(require({!r}))"
    want = run(["node", "-e", show.format("./analysis.js")], project)
    have = run(["node", "-e", show.format("trail-notes")], consumer)
    assert want.returncode == have.returncode == 0, have.stderr
    assert have.stdout == want.stdout
    assert "meanKm: 9.25" in have.stdout
    # The second notebook is exported on its own path, and works through its require.
    mean = run(["node", "-e", "console.log(require('trail-notes/helpers').mean([1, 2]))"], consumer)
    assert mean.stdout == "1.5\n", mean.stderr
    assert not (consumer / "node_modules" / "trail-notes" / ".env").exists()


def test_esm_notebook_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "esm"
    shutil.copytree(ESM, src)
    got = export("report.mjs", "-o", "out", "--name", "word-report", "--tarball", cwd=src)
    assert got.code == 0, got.describe()
    manifest = json.loads((src / "out" / "package.json").read_text())
    assert manifest["main"] == "./report.mjs"
    assert manifest["files"] == ["lib/words.mjs", "report.mjs"]
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    tarball = src / got.stdout.decode().strip().splitlines()[-1]
    assert run(["npm", "install", *NPM_OFFLINE, str(tarball)], consumer).returncode == 0
    code = "import report from 'word-report'; console.log(JSON.stringify(report));"
    imported = run(["node", "--input-type=module", "-e", code], consumer)
    assert imported.stdout == 'words: 6\n{"words":6}\n', imported.stderr


def test_with_tests_runs_green_and_catches_a_change(project: Path) -> None:
    got = export("analysis.js", "-o", "out", "--with-tests", cwd=project)
    assert got.code == 0, got.describe()
    out = project / "out"
    manifest = json.loads((out / "package.json").read_text())
    assert manifest["scripts"]["test"] == "node --test test/tonic-outputs.test.cjs"
    fake_dep(out)
    green = run(["node", "--test", "test/tonic-outputs.test.cjs"], out)
    assert green.returncode == 0, green.stdout
    assert "# pass 1" in green.stdout
    nb = out / "analysis.js"
    nb.write_text(nb.read_text().replace("'trails:'", "'paths:'"))
    red = run(["node", "--test", "test/tonic-outputs.test.cjs"], out)
    assert red.returncode != 0
    assert "# fail 1" in red.stdout


IGNORE_CASES = [
    # (ignore file, its content, error expected in the message, or None: exported)
    (".gitignore", "data/\n", "excluded by .gitignore (line 1: data/)"),
    (".gitignore", "*.json\n", "excluded by .gitignore (line 1: *.json)"),
    (".npmignore", "# comment\n/data/trails.json\n", "excluded by .npmignore (line 2"),
    (".gitignore", "data/\n!data/trails.json\n", "line 1: data/"),  # dir excluded: no way back
    (".gitignore", "/data/*\n!/data/trails.json\n", None),
    (".gitignore", "secret.json\nscratch/\n", None),  # not required: simply left out
    ("lib/.gitignore", "/format.js\n", "excluded by lib/.gitignore (line 1: /format.js)"),
    (".gitignore", "**/lib/**\n", "line 1: **/lib/**"),
]


@pytest.mark.parametrize("in_git", [False, True], ids=["plain folder", "git work tree"])
@pytest.mark.parametrize(("name", "content", "error"), IGNORE_CASES)
def test_ignored_files_are_never_exported(
    project: Path, in_git: bool, name: str, content: str, error: str | None
) -> None:
    if in_git:
        assert run(["git", "init", "-q"], project).returncode == 0
    (project / name).write_text(content)
    (project / "secret.json").write_text('{"token": "x"}\n')
    (project / "scratch").mkdir()
    (project / "scratch" / "draft.js").write_text("console.log('draft')\n")
    got = export("analysis.js", "-o", "out", cwd=project)
    if error is None:
        assert got.code == 0, got.describe()
        shipped = {p.name for p in (project / "out").rglob("*")}
        assert not shipped & {".env", "secret.json", "draft.js", ".gitignore", ".npmignore"}
        assert "trails.json" in shipped
        return
    assert got.code == 2, got.describe()
    message = got.stderr.decode()
    assert message.startswith("tonic: error: ")
    assert error in message and "tonic never exports it" in message
    assert "requires" in message  # names the requiring file and line
    assert not (project / "out").exists()


def test_env_file_required_is_refused(project: Path) -> None:
    (project / ".env.json").write_text('{"key": "secret"}\n')
    nb = project / "nb.js"
    nb.write_text("const cfg = require('./.env.json');\nconsole.log(Object.keys(cfg));\n")
    got = export("nb.js", "-o", "out", cwd=project)
    assert got.code == 2
    assert "nb.js:1: requires .env.json, which is a .env file" in got.stderr.decode()


GIT_PATTERNS = [
    "*.log",
    "/build",
    "build/",
    "doc/*.txt",
    "doc/**/*.pdf",
    "**/tmp",
    "a/**",
    "!keep.log",
    "\\#hash",
    "x?z",
    "[ab]c.txt",
    "[!a]d.txt",
    "trailing\\ ",
    "deep/**/leaf",
]
GIT_PATHS = [
    "err.log",
    "keep.log",
    "sub/err.log",
    "build/out.js",
    "sub/build/x.js",
    "build",
    "doc/a.txt",
    "doc/sub/a.txt",
    "doc/x/y/z.pdf",
    "doc/z.pdf",
    "tmp/t.js",
    "q/tmp/t.js",
    "a/b/c.js",
    "#hash",
    "xyz",
    "x/z",
    "ac.txt",
    "cc.txt",
    "bd.txt",
    "ad.txt",
    "trailing ",
    "deep/leaf",
    "deep/a/b/leaf",
    "plain.js",
]


def test_ignore_rules_agree_with_git_check_ignore(tmp_path: Path) -> None:
    """The same verdict as git's, file by file, for a table of patterns."""
    assert run(["git", "init", "-q"], tmp_path).returncode == 0
    (tmp_path / ".gitignore").write_text("\n".join(GIT_PATTERNS) + "\n")
    for rel in GIT_PATHS:
        path = tmp_path / rel
        if rel == "build":
            path.mkdir(exist_ok=True)
            path = path / "inside.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    rules = IgnoreRules(tmp_path)
    paths = [rel if rel != "build" else "build/inside.js" for rel in GIT_PATHS]
    git = run(["git", "check-ignore", "--no-index", *paths], tmp_path)
    by_git = set(git.stdout.splitlines())
    ours = {rel for rel in paths if rules.excluded(tmp_path / rel) is not None}
    assert ours == by_git
    assert {"err.log", "build/out.js", "doc/x/y/z.pdf", "#hash", "ac.txt", "bd.txt"} <= ours
    assert "keep.log" not in ours and "plain.js" not in ours


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("trail-notes", None),
        ("@me/trail-notes", None),
        ("a.b_c-d", None),
        ("", "empty"),
        ("Trail", "capital letters"),
        (".hidden", "starts with a period"),
        ("_private", "starts with an underscore"),
        ("has space", "not URL-safe"),
        ("caf\u00e9", "not URL-safe"),
        ("a" * 215, "at most 214"),
        ("node_modules", "reserved"),
        ("fs", "core module"),
        ("wow!", "~'!()*"),
        ("@me/a/b", "one slash"),
        ("@me/.x", "after the scope"),
        (" lead", "spaces"),
    ],
)
def test_npm_names(name: str, problem: str | None) -> None:
    got = npm_name_problem(name, frozenset({"fs", "path"}))
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


@pytest.mark.parametrize(
    ("stem", "name"),
    [("analysis", "analysis"), ("My Trail Notes", "my-trail-notes"), ("_x__y", "x__y")],
)
def test_default_names(stem: str, name: str) -> None:
    assert sanitize(stem) == name


@pytest.mark.parametrize(
    ("version", "ok"), [("1.0.0", True), ("0.2.0-beta.1+build.5", True), ("1.0", False)]
)
def test_versions(version: str, ok: bool) -> None:
    assert (version_problem(version) is None) == ok


ERRORS = [
    # (notebook source or None for analysis.js, extra args, message part)
    (
        "const pad = require('left-pad-not-here');\n",
        [],
        "nb.js:1: requires package 'left-pad-not-here', which is not installed",
    ),
    (None, ["--name", "Trail Notes"], "'Trail Notes' is not a valid npm package name"),
    (None, ["--version", "v1"], "--version: 'v1' is not a semantic version"),
    ("require('./missing');\n", [], "nb.js:1: requires './missing', which does not exist"),
    ("require('/etc/hostname');\n", [], "by an absolute path"),
    ("// %% one\nconst a = 1;\n\n// %% two\nnull.x;\n", [], 'cell 2 "two" (lines 4-5)'),
]


@pytest.mark.parametrize(("source", "args", "message"), ERRORS)
def test_errors(project: Path, source: str | None, args: list[str], message: str) -> None:
    name = "analysis.js"
    if source is not None:
        name = "nb.js"
        (project / name).write_text(source)
    got = export(name, "-o", "out", *args, cwd=project)
    assert got.code == 2, got.describe()
    err = got.stderr.decode()
    assert err.startswith("tonic: error: ") and err.count("\n") == 1, err  # one line
    assert message in err
    assert not (project / "out").exists()
    assert not list(project.glob(".out.tonic-*"))


def test_output_folder_refused_unless_force(project: Path) -> None:
    out = project / "out"
    out.mkdir()
    (out / "old.txt").write_text("old\n")
    got = export("analysis.js", "-o", "out", cwd=project)
    assert got.code == 2
    assert "out: the output folder exists and is not empty; use --force" in got.stderr.decode()
    assert (out / "old.txt").exists()
    forced = export("analysis.js", "-o", "out", "--force", cwd=project)
    assert forced.code == 0, forced.describe()
    assert not (out / "old.txt").exists() and (out / "package.json").is_file()
    assert sorted(p.name for p in project.iterdir() if p.name.startswith(".out")) == []
    # Never replace a folder that holds the notebooks themselves, even with --force.
    here = export("analysis.js", "-o", ".", "--force", cwd=project)
    assert here.code == 2 and "which is exported" in here.stderr.decode()
    assert (project / "analysis.js").is_file()


def test_export_help_teaches() -> None:
    got = tonic("export", "--help")
    text = got.stdout.decode()
    assert got.code == 0
    for part in ("--tarball", "--with-tests", "--force", "tonic export analysis.js -o"):
        assert part in text
    flat = " ".join(text.replace("│", " ").split())
    for part in (
        "--no-outputs Leave the recorded outputs (printed text, values, errors) out",
        "--with-tests checks exit codes, not stdout",
        "value of an environment variable or .env entry (see --no-outputs)",
        "a symlink out of the project is left out with a warning",
    ):
        assert part in flat, part


@pytest.mark.parametrize(
    ("installed", "locked", "declared", "want"),
    [
        ("1.4.2", "1.4.0", "^1.0.0", ("1.4.2", "node_modules")),
        (None, "1.4.0", "^1.0.0", ("1.4.0", "lock file")),
        (None, None, "^1.0.0", ("^1.0.0", "package.json")),
        (None, None, None, None),
    ],
)
def test_dependency_versions(
    tmp_path: Path,
    installed: str | None,
    locked: str | None,
    declared: str | None,
    want: tuple[str, str] | None,
) -> None:
    """The installed version, else the lock file's, else the declared range."""
    from tonic.export.deps import package_version

    name = "some-pkg"
    nb = tmp_path / "nb.js"
    nb.write_text(f"require('{name}/sub');\n")
    if installed:
        (tmp_path / "node_modules" / name).mkdir(parents=True)
        (tmp_path / "node_modules" / name / "package.json").write_text(
            json.dumps({"name": name, "version": installed})
        )
    if locked:
        lock = {"lockfileVersion": 3, "packages": {f"node_modules/{name}": {"version": locked}}}
        (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    manifest = {"name": "p", "dependencies": {name: declared} if declared else {}}
    (tmp_path / "package.json").write_text(json.dumps(manifest))
    assert package_version(name, nb, tmp_path) == want


def test_snapshot_cache_is_never_exported(project: Path) -> None:
    cache = project / ".tonic-cache"
    cache.mkdir()
    (cache / "mod.js").write_text("module.exports = 1;\n")
    (project / "nb.js").write_text("console.log(require('./.tonic-cache/mod.js'));\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tonic", "export", "nb.js", "-o", "out"],
        cwd=project,
        env=dict(os.environ, TONIC_CACHE=str(cache)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "nb.js:1: requires .tonic-cache/mod.js, which is in tonic's snapshot cache" in (
        proc.stderr
    )


SECRET = "SECRET-CREDENTIAL-9f8e7d"


def link(path: Path, target: str | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def out_by_file(root: Path, elsewhere: Path) -> None:
    link(root / "lib" / "settings.json", elsewhere / ".docker" / "config.json")


def out_by_dir(root: Path, elsewhere: Path) -> None:
    link(root / "lib" / "ext", elsewhere / ".docker")


def in_project_file(root: Path, elsewhere: Path) -> None:
    link(root / "data" / "current.json", "trails.json")


def in_project_dir(root: Path, elsewhere: Path) -> None:
    link(root / "views", "lib")


def into_hidden_folder(root: Path, elsewhere: Path) -> None:
    (root / ".secrets").mkdir()
    (root / ".secrets" / "key.json").write_text(json.dumps({"auth": SECRET}))
    link(root / "lib" / "key.json", "../.secrets/key.json")


def dangling(root: Path, elsewhere: Path) -> None:
    link(root / "lib" / "gone.json", "../nowhere.json")


def notebook_link(root: Path, elsewhere: Path) -> None:
    link(root / "link.js", "nb.js")


COUNT = "console.log('keys', Object.keys(require({!r})).length);\n"
SYMLINKS = [
    # (project layout, notebook's require, exported notebook, files shipped, warning)
    (out_by_file, "./lib/settings.json", "nb.js", [], "lib/settings.json is a symlink to /"),
    (out_by_dir, "./lib/ext/config.json", "nb.js", [], "lib/ext/config.json is a symlink to /"),
    (in_project_file, "./data/current.json", "nb.js", ["data/current.json"], None),
    (in_project_dir, "./views/format.js", "nb.js", ["views/format.js"], None),
    (into_hidden_folder, "./lib/key.json", "nb.js", [], ".secrets/key.json, hidden in the project"),
    (dangling, "./lib/format.js", "nb.js", ["lib/format.js"], None),
    (notebook_link, "./lib/format.js", "link.js", ["lib/format.js"], None),
]


@pytest.mark.parametrize(
    ("setup", "required", "notebook", "shipped", "warning"),
    SYMLINKS,
    ids=[case[0].__name__ for case in SYMLINKS],
)
def test_symlinks_out_of_the_project_are_never_followed(
    project: Path,
    tmp_path: Path,
    setup: object,
    required: str,
    notebook: str,
    shipped: list[str],
    warning: str | None,
) -> None:
    """A link out of the project (by file, by folder, into a hidden folder) is left out
    with a warning; one inside is a copy of its target in the folder and the tarball
    (npm pack drops links); a dangling one nobody requires is simply not there; a
    notebook that is a link is exported as its target."""
    elsewhere = tmp_path / "home"
    (elsewhere / ".docker").mkdir(parents=True)
    (elsewhere / ".docker" / "config.json").write_text(json.dumps({"auths": SECRET}))
    assert callable(setup)
    setup(project, elsewhere)
    (project / "nb.js").write_text(COUNT.format(required))
    got = export(notebook, "-o", "out", "--tarball", cwd=project)
    assert got.code == 0, got.describe()
    err = got.stderr.decode()
    warnings = [line for line in err.splitlines() if line.startswith("tonic: warning: ")]
    assert err.count("\n") == len(warnings) == (1 if warning else 0), err
    if warning is not None:
        assert warning in warnings[0] and "left out of the package" in warnings[0]
        assert ("outside the project" in warnings[0]) != ("hidden" in warnings[0])
        assert "required at nb.js:1" in warnings[0]
    out = project / "out"
    manifest = json.loads((out / "package.json").read_text())
    assert manifest["files"] == sorted(["nb.js", *shipped])
    assert manifest["main"] == "./nb.js"
    tarball = project / got.stdout.decode().strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        members = {m.name.removeprefix("package/"): m for m in tar.getmembers()}
        assert all(m.isfile() for m in members.values())
        packed = {name: tar.extractfile(m).read() for name, m in members.items()}  # type: ignore[union-attr]
    folder = {
        p.relative_to(out).as_posix(): p for p in out.rglob("*") if not p.is_dir() and p != tarball
    }
    assert (
        sorted(packed)
        == sorted(folder)
        == sorted([*manifest["files"], "README.md", "package.json"])
    )
    assert not any(p.is_symlink() for p in folder.values())
    for name, data in packed.items():
        assert SECRET.encode() not in data, name
        assert folder[name].read_bytes() == data
    for rel in shipped:  # a copy of what the link pointed to
        assert (out / rel).read_bytes() == (project / rel).read_bytes()
    if warning is None:  # the package runs as the project does
        want = run(["node", "nb.js"], project)
        have = run(["node", "nb.js"], out)
        assert have.returncode == want.returncode == 0 and have.stdout == want.stdout


def test_a_package_json_in_home_makes_no_project(tmp_path: Path) -> None:
    """A stray ~/package.json does not make the home folder the project: a link from
    ~/work to another folder of home is left out."""
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    (home / "package.json").write_text('{"name": "stray", "version": "1.0.0"}\n')
    (home / "notes").mkdir()
    (home / "notes" / "creds.json").write_text(json.dumps({"auth": SECRET}))
    link(home / "work" / "lib" / "settings.json", home / "notes" / "creds.json")
    (home / "work" / "nb.js").write_text(COUNT.format("./lib/settings.json"))
    got = tonic(
        "export", "nb.js", "-o", "out", cwd=home / "work", env=dict(os.environ, HOME=str(home))
    )
    assert got.code == 0, got.describe()
    assert "lib/settings.json is a symlink to" in got.stderr.decode()
    assert "outside the project" in got.stderr.decode()
    shipped = [p for p in (home / "work" / "out").rglob("*") if p.is_file()]
    assert all(SECRET.encode() not in p.read_bytes() for p in shipped)
    assert json.loads((home / "work" / "out" / "package.json").read_text())["files"] == ["nb.js"]


def dangling_required(root: Path) -> tuple[str, str]:
    link(root / "lib" / "gone.json", "../nowhere.json")
    return "nb.js", "try { require('./lib/gone.json'); } catch {}\n"


def linked_module_requires(root: Path) -> tuple[str, str]:
    """node resolves a linked module's requires from its target's folder; the copy in
    the package would look in the link's."""
    (root / "shared").mkdir()
    (root / "shared" / "a.js").write_text("module.exports = require('./b');\n")
    (root / "shared" / "b.js").write_text("module.exports = 2;\n")
    link(root / "lib" / "a.js", "../shared/a.js")
    return "nb.js", "console.log(require('./lib/a.js'));\n"


def linked_module_type(root: Path) -> tuple[str, str]:
    (root / "esm").mkdir()
    (root / "esm" / "package.json").write_text('{"type": "module"}\n')
    (root / "esm" / "m.js").write_text("export default 7;\n")
    link(root / "lib" / "m.js", "../esm/m.js")
    return "nb.mjs", "import m from './lib/m.js';\nconsole.log(m);\n"


def linked_to_ignored(root: Path) -> tuple[str, str]:
    (root / "secret.json").write_text("{}\n")
    (root / ".gitignore").write_text("secret.json\n")
    link(root / "lib" / "x.json", "../secret.json")
    return "nb.js", "console.log(require('./lib/x.json'));\n"


LINK_REFUSALS = [
    # (project layout, returning the notebook's name and source; the error's message)
    (dangling_required, "nb.js:1: requires './lib/gone.json', a symlink to ../nowhere.json"),
    (linked_module_requires, "lib/a.js:1: lib/a.js is a symlink to shared/a.js, whose require"),
    (linked_module_type, "lib/m.js is a symlink to esm/m.js, whose package.json gives another"),
    (linked_to_ignored, "requires lib/x.json (a symlink to secret.json), which is excluded by"),
]


@pytest.mark.parametrize(
    ("setup", "message"), LINK_REFUSALS, ids=[case[0].__name__ for case in LINK_REFUSALS]
)
def test_symlinks_a_package_cannot_copy_are_refused(
    project: Path, setup: object, message: str
) -> None:
    assert callable(setup)
    name, source = setup(project)
    (project / name).write_text(source)
    got = export(name, "-o", "out", cwd=project)
    assert got.code == 2, got.describe()
    err = got.stderr.decode()
    assert err.startswith("tonic: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (project / "out").exists()


TOKEN = "sk-live-7Hq2Zr9xWp4"
READ = (
    "const fs = require('node:fs');\n"
    "const dotenv = fs.existsSync('.env') ? fs.readFileSync('.env', 'utf8') : '';\n"
    "const read = (k) => process.env[k] ?? dotenv.match(new RegExp(`^${k}=(.*)$`, 'm'))?.[1];\n"
)
PRINTED = "// %% Connect\n" + READ + "console.log('using', read('NAME'));\n"
VALUE = "// %% Setup\n" + READ + "\n// %% Token\nread('NAME')\n"
LATER = "// %% Connect\n" + READ + "setTimeout(() => console.log(read('NAME')), 1);\n"
SECRETS = [
    # (variable, value, from: env or .env, notebook, the place the warning names or None)
    ("API_TOKEN", TOKEN, "env", PRINTED, 'cell 1 "Connect" (lines 1-5)'),
    ("DB_PASSWORD", TOKEN, ".env", PRINTED, 'cell 1 "Connect" (lines 1-5)'),
    ("API_TOKEN", TOKEN, "env", VALUE, 'cell 2 "Token" (lines 6-7)'),
    ("API_TOKEN", TOKEN, "env", LATER, "after the last cell"),
    ("PIN", "ab12cd", "env", PRINTED, None),  # too short to be a secret
    ("TOOLS", "/opt/tools/bin:/usr/local/bin", "env", PRINTED, None),  # paths
    ("API_URL", "https://api.example.com/v1", "env", PRINTED, None),  # no credentials
    ("SEED", "1234567890", ".env", PRINTED, None),  # a number
    ("MODE", "production", ".env", PRINTED, None),  # a common word
]


@pytest.mark.parametrize(
    ("name", "value", "source", "notebook", "warned"),
    SECRETS,
    ids=["env", ".env", "value", "after", "short", "paths", "url", "number", "word"],
)
def test_secrets_in_outputs_are_named_and_no_outputs_leaves_them_out(
    project: Path, name: str, value: str, source: str, notebook: str, warned: str | None
) -> None:
    """A recorded output that shows a secret-like value of the environment or a .env
    entry warns, naming the cell and the variable, never the value; --no-outputs leaves
    every output out, and its `npm test` still passes (it checks the exit code)."""
    environ = dict(os.environ)
    if source == ".env":
        (project / ".env").write_text(f"{name}={value}\n")
    else:
        environ[name] = value
    (project / "nb.js").write_text(notebook.replace("NAME", name))
    args = ["nb.js", "-o", "out", "--with-tests"]
    got = tonic("export", *args, cwd=project, env=environ, timeout=120)
    assert got.code == 0, got.describe()
    err = got.stderr.decode()
    assert value.encode() not in got.stderr + got.stdout
    out = project / "out"
    assert value in (out / "README.md").read_text()  # the outputs, as before
    if warned is None:
        assert err == "", err
    else:
        named = f"${name}" if source == "env" else f"{name} (from .env)"
        assert err.count("\n") == 1 and err.startswith("tonic: warning: nb.js: "), err
        assert f"{warned} printed the value of {named}" in err
        assert "--no-outputs" in err

    more = ["--no-outputs", "--force", "--tarball"]
    bare = tonic("export", *args, *more, cwd=project, env=environ, timeout=120)
    assert bare.code == 0, bare.describe()
    assert bare.stderr == b"", bare.describe()  # nothing shown: nothing to warn about
    tarball = project / bare.stdout.decode().strip().splitlines()[-1]
    for path in out.rglob("*"):
        if path.is_file() and path != tarball:
            assert value.encode() not in path.read_bytes(), path
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert value.encode() not in data, member.name
    readme = (out / "README.md").read_text()
    assert "```text" not in readme and "\n=> " not in readme
    assert "```js" in readme and "const read = " in readme  # the code stays
    test = (out / "test" / "tonic-outputs.test.cjs").read_text()
    assert "stdout" not in test
    green = run(["node", "--test", "test/tonic-outputs.test.cjs"], out)
    assert green.returncode == 0 and "# pass 1" in green.stdout, green.stdout


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("API_TOKEN", TOKEN, True),
        ("DATABASE_URL", "postgres://app:hunter2x@db:5432/app", True),  # credentials
        ("WEBHOOK", "https://hooks.example.com/x?key=abcdef12", True),  # a query
        ("PASSPHRASE", "correct horse battery", True),
        ("API_TOKEN", "abc1234", False),  # 7 characters
        ("HOME", "/home/someone", False),
        ("HOSTNAME", "a1b2c3d4e5f6", False),  # a container's: printed innocently
        ("LC_ALL", "en_US.UTF-8", False),
        ("TONIC_CACHE", "relative-cache", False),
        ("DATA_DIR", "./data/raw/2024", False),
        ("GOPATH", "/go:/home/me/go", False),
        ("PORT", "808080808", False),
        ("VERSION", "20.11.1-2", False),
        ("API_URL", "https://api.example.com/v1/", False),
        ("APP_ENV", "Production", False),
    ],
)
def test_which_values_can_be_secrets(name: str, value: str, secret: bool) -> None:
    assert can_be_secret(name, value) == secret


def test_dotenv_entries(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# a comment\n"
        "PLAIN=value-one # trailing comment\n"
        "export EXPORTED=value-two\n"
        'DOUBLE="value three # kept"\n'
        "SINGLE='value-four'\n"
        "  SPACED = value-five  \n"
        "not an entry\n"
    )
    assert dotenv_entries(env) == {
        "PLAIN": "value-one",
        "EXPORTED": "value-two",
        "DOUBLE": "value three # kept",
        "SINGLE": "value-four",
        "SPACED": "value-five",
    }


def test_dotenv_files(tmp_path: Path) -> None:
    """The .env files whose entries are looked for: not templates, not other names."""
    names = [".env", ".env.local", ".envrc", ".env.example", ".env.sample", ".environment"]
    for name in [*names, "env"]:
        (tmp_path / name).write_text("A=b\n")
    (tmp_path / ".env.d").mkdir()
    found = [p.name for p in dotenv_files([tmp_path, tmp_path])]
    assert found == [".env", ".env.local", ".envrc"]
