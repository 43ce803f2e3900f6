"""tonic's settings (tonic/settings/): one table, one grammar per kind of value, option >
environment > package.json > default, `tonic doctor`'s table and README's; recorded runs
steer the engine through their Program, never through this process's environment."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT, tonic
from tonic import launch, settings
from tonic.errors import EngineError, InputError, TonicError

# -- parsing ----------------------------------------------------------------------------

SIZES = [
    ("0", 0),
    ("512", 512),
    ("512k", 512 << 10),
    ("512K", 512 << 10),
    ("500M", 500 << 20),
    ("256MiB", 256 << 20),
    ("256mb", 256 << 20),
    ("2G", 2 << 30),
    (" 2 GB ", 2 << 30),
    ("1.5G", 3 << 29),
    ("0.5k", 512),
    ("1T", 1 << 40),
    ("3B", 3),
]
NOT_SIZES = ["x", "", "-1", "1.5.5", "1 X", "M", "1e3", "½G"]


@pytest.mark.parametrize(("text", "expected"), SIZES)
def test_size(text: str, expected: int) -> None:
    assert settings.parse_size(text) == expected


@pytest.mark.parametrize("text", NOT_SIZES)
def test_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match=r"^is not a size \(examples: 0, 256M, 2G\)$"):
        settings.parse_size(text)


@pytest.mark.parametrize(("n", "shown"), [(0, "0"), (512 << 20, "512M"), (3 << 29, "1536M")])
def test_format_size_reads_back(n: int, shown: str) -> None:
    assert settings.format_size(n) == shown
    assert settings.parse_size(shown) == n


# (variable, value, Settings attribute, what it reads as); an empty value is unset.
VALUES = [
    ("TONIC_HOT_CACHE", "256M", "hot_cache", 256 << 20),
    ("TONIC_HOT_CACHE", "0", "hot_cache", 0),
    ("TONIC_HOT_CACHE", "", "hot_cache", 4 << 30),
    ("TONIC_MAX_BYTES", "4194304", "max_bytes", 4 << 20),
    ("TONIC_MAX_BYTES", "4M", "max_bytes", 4 << 20),
    ("TONIC_MAX_BYTES", "", "max_bytes", 2 << 20),
    ("TONIC_SNAPSHOT_MIN_MS", "12.5", "snapshot_min_ms", 12.5),
    ("TONIC_SNAPSHOT_MIN_MS", "-3", "snapshot_min_ms", 0.0),
    ("TONIC_SNAPSHOT_MIN_MS", "", "snapshot_min_ms", 50.0),
    ("TONIC_SERVER_IDLE", "2", "server_idle", 2.0),
    ("TONIC_SERVER_IDLE", "soon", "server_idle", 600.0),
    ("TONIC_SERVER_IDLE", "-1", "server_idle", 600.0),
    ("TONIC_SERVER", "ON", "server", "on"),
    ("TONIC_SERVER", "no", "server", "off"),
    ("TONIC_SERVER", "sometimes", "server", "off"),
    ("TONIC_SERVER", "", "server", "auto"),
    ("TONIC_ENGINE", "replay", "engine", "replay"),
    ("TONIC_ENGINE", "", "engine", None),
    ("TONIC_DOCKER_IMAGE", "node:20", "image", "node:20"),
    ("TONIC_NODE", "/opt/node", "node", "/opt/node"),
    ("TONIC_CRIU", "/opt/criu", "criu", "/opt/criu"),
    ("TONIC_CRIU_HOME", "/opt/criu-home", "criu_home", Path("/opt/criu-home")),
    ("TONIC_CACHE", "/x/cache", "cache", Path("/x/cache")),
    ("TONIC_RUNTIME_DIR", "/run/me", "runtime_dir", "/run/me"),
]


@pytest.mark.parametrize(("variable", "text", "attribute", "expected"), VALUES)
def test_value(variable: str, text: str, attribute: str, expected: object) -> None:
    got = settings.load(env={variable: text})
    assert getattr(got, attribute) == expected
    assert got.source(settings.BY_KEY[attribute]) == ("environment" if text else "default")


def test_defaults_from_other_variables(tmp_path: Path) -> None:
    env = {
        "XDG_CACHE_HOME": "/xdg/cache",
        "XDG_DATA_HOME": "/xdg/data",
        "XDG_RUNTIME_DIR": "/xdg/run",
    }
    got = settings.load(env=env)
    assert got.cache == Path("/xdg/cache/tonic")
    assert got.criu_home == Path("/xdg/data/tonic/criu")
    assert got.runtime_dir == "/xdg/run/tonic"
    relative = settings.load(env={"XDG_CACHE_HOME": "relative"})
    assert relative.cache == Path.home() / ".cache" / "tonic"


def test_relative_cache_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative TONIC_CACHE is taken from where tonic started (a kernel may run elsewhere)."""
    monkeypatch.chdir(tmp_path)
    assert settings.load(env={"TONIC_CACHE": "c"}).cache == tmp_path / "c"
    assert settings.load(env={"TONIC_CACHE": "~/c"}).cache == Path.home() / "c"


# (variable, value, attribute, error class, the one line)
BAD_VALUES = [
    (
        "TONIC_HOT_CACHE",
        "x",
        "hot_cache",
        TonicError,
        "TONIC_HOT_CACHE='x' is not a size (examples: 0, 256M, 2G)",
    ),
    (
        "TONIC_HOT_CACHE",
        "-5M",
        "hot_cache",
        TonicError,
        "TONIC_HOT_CACHE='-5M' is not a size (examples: 0, 256M, 2G)",
    ),
    (
        "TONIC_SNAPSHOT_MIN_MS",
        "soon",
        "snapshot_min_ms",
        EngineError,
        "TONIC_SNAPSHOT_MIN_MS='soon' is not a number",
    ),
    (
        "TONIC_MAX_BYTES",
        "lots",
        "max_bytes",
        InputError,
        "TONIC_MAX_BYTES='lots' is not a size (examples: 2097152, 4M)",
    ),
    (
        "TONIC_MAX_BYTES",
        "0",
        "max_bytes",
        InputError,
        "TONIC_MAX_BYTES='0' must be positive (a size: e.g. 4M)",
    ),
]


@pytest.mark.parametrize(("variable", "text", "attribute", "kind", "message"), BAD_VALUES)
def test_bad_value(
    variable: str, text: str, attribute: str, kind: type[TonicError], message: str
) -> None:
    got = settings.load(env={variable: text})  # loading never fails: using the value does
    with pytest.raises(TonicError) as caught:
        getattr(got, attribute)
    assert type(caught.value) is kind
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def test_max_size_option_uses_the_same_grammar() -> None:
    from tonic.commands.cache import parse_size

    assert parse_size("1.5G") == 3 << 29
    assert parse_size("512k") == 512 << 10
    with pytest.raises(InputError) as caught:
        parse_size("x")
    assert str(caught.value) == "--max-size: 'x' is not a size (examples: 500M, 2G)"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["cache", "gc", "--max-size", "x"], {}, "--max-size: 'x' is not a size"),
        (["cache", "gc"], {"TONIC_HOT_CACHE": "x"}, "TONIC_HOT_CACHE='x' is not a size"),
        (["cells", "{nb}"], {"TONIC_MAX_BYTES": "lots"}, "TONIC_MAX_BYTES='lots' is not a size"),
    ],
)
def test_bad_value_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    nb = tmp_path / "nb.js"
    nb.write_text("console.log(1);\n")
    cache = tmp_path / "cache"
    got = tonic(
        *(a.format(nb=nb) for a in args),
        env=dict(os.environ, TONIC_CACHE=str(cache), **env),
    )
    err = got.stderr.decode()
    assert got.code == 2, got.describe()
    assert err.count("\n") == 1 and err.startswith("tonic: error: ") and message in err, err


def test_a_bad_value_stops_only_what_needs_it(tmp_path: Path) -> None:
    nb = tmp_path / "nb.js"
    nb.write_text("console.log(1);\n")
    got = tonic("cells", str(nb), env=dict(os.environ, TONIC_HOT_CACHE="x"))
    assert got.code == 0, got.describe()


def test_launch_reads_server_settings_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up client's own reading of TONIC_SERVER and TONIC_RUNTIME_DIR (the one
    exception) agrees with the table's."""
    for value in ("", "auto", "ON", " off ", "0", "no", "false", "maybe"):
        monkeypatch.setenv("TONIC_SERVER", value)
        assert launch.mode() == settings.current().server, value
    monkeypatch.delenv("TONIC_SERVER")
    assert launch.mode() == settings.current().server == "auto"
    for xdg in ("/xdg/run", None):
        monkeypatch.delenv("TONIC_RUNTIME_DIR", raising=False)
        if xdg is None:
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        else:
            monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
        assert settings.current().runtime_dir == launch.default_runtime_dir(xdg)


# -- precedence: option > environment > package.json > default --------------------------

PRECEDENCE = [
    # (option, environment, package.json, value, source)
    ("docker", "criu", "replay", "docker", "option"),
    (None, "criu", "replay", "criu", "environment"),
    (None, "", "replay", "replay", "package.json"),
    (None, None, "replay", "replay", "package.json"),
    (None, None, None, None, "default"),
    ("", None, None, None, "default"),  # an empty option is not given
]


@pytest.mark.parametrize(("option", "env", "package", "value", "source"), PRECEDENCE)
@pytest.mark.parametrize(
    ("key", "variable"), [("engine", "TONIC_ENGINE"), ("image", "TONIC_DOCKER_IMAGE")]
)
def test_precedence(
    tmp_path: Path,
    key: str,
    variable: str,
    option: str | None,
    env: str | None,
    package: str | None,
    value: str | None,
    source: str,
) -> None:
    if package is not None:
        (tmp_path / "package.json").write_text(json.dumps({"tonic": {key: package}}))
    nb = tmp_path / "deeper" / "nb.js"
    nb.parent.mkdir()
    got = settings.load(nb, options={key: option}, env={variable: env} if env is not None else {})
    assert getattr(got, key) == value
    assert got.source(settings.BY_KEY[key]) == source


def test_no_project_without_a_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"tonic": {"engine": "replay"}}))
    monkeypatch.chdir(tmp_path)
    assert settings.load(env={}).engine is None
    assert settings.load(tmp_path, env={}).engine == "replay"  # a folder: its project


@pytest.mark.parametrize(
    ("package", "message"),
    [
        ({"tonic": "replay"}, '"tonic" must be an object like {"engine": "docker"}'),
        ({"tonic": {"engin": "x"}}, "unknown \"tonic\" setting 'engin' (known: engine, image)"),
        ({"tonic": {"engine": ""}}, '"tonic"."engine" must be a non-empty string'),
    ],
)
def test_bad_project_settings(tmp_path: Path, package: object, message: str) -> None:
    (tmp_path / "package.json").write_text(json.dumps(package))
    with pytest.raises(InputError) as caught:
        settings.load(tmp_path / "nb.js")
    assert str(caught.value) == f"{tmp_path / 'package.json'}: {message}"


def test_options_only_where_the_table_has_one() -> None:
    with pytest.raises(ValueError, match="no command-line option"):
        settings.load(options={"hot_cache": "1G"})


def test_engine_for_takes_the_settings(tmp_path: Path) -> None:
    from tonic.engines import engine_for
    from tonic.engines.docker.engine import DockerBackend
    from tonic.engines.snapshots import SnapshotEngine

    engine, _ = engine_for(settings.load(env={"TONIC_ENGINE": "replay"}))
    assert engine.name == "replay"
    engine, _ = engine_for(settings.load(env={}), default="replay")
    assert engine.name == "replay"
    with pytest.raises(EngineError, match="unknown engine 'warp'"):
        engine_for(settings.load(options={"engine": "warp"}, env={}))
    chosen = settings.load(options={"engine": "docker", "image": "my:1"}, env={})
    if DockerBackend().availability().ok:
        engine, _ = engine_for(chosen)
        assert isinstance(engine, SnapshotEngine) and isinstance(engine.backend, DockerBackend)
        assert engine.backend.image == "my:1"


# -- tonic doctor -----------------------------------------------------------------------


def _doctor_rows(text: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if parts[0].startswith("TONIC_") and len(parts) == 3:
            rows[parts[0]] = (parts[1], parts[2])
    return rows


def test_doctor_shows_settings_and_where_they_came_from(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"tonic": {"image": "my-node:20"}}))
    env = dict(os.environ, COLUMNS="250", TONIC_ENGINE="replay", TONIC_HOT_CACHE="1.5G")
    env.pop("TONIC_NODE", None)
    env.pop("TONIC_DOCKER_IMAGE", None)
    got = tonic("doctor", cwd=tmp_path, env=env)
    assert got.code == 0, got.describe()
    out = got.stdout.decode()
    assert re.search(r"^setting\s+value\s+from\s*$", out, re.MULTILINE), out
    rows = _doctor_rows(out)
    assert set(rows) == {s.variable for s in settings.TABLE}, out
    assert rows["TONIC_ENGINE"] == ("replay", "environment")
    assert rows["TONIC_HOT_CACHE"] == ("1536M", "environment")
    assert rows["TONIC_DOCKER_IMAGE"] == (
        "my-node:20",
        f"package.json ({(tmp_path / 'package.json').resolve()})",
    )
    assert rows["TONIC_CACHE"] == (os.environ["TONIC_CACHE"], "environment")
    assert rows["TONIC_NODE"] == ("node on PATH", "default")
    assert rows["TONIC_SERVER"] == ("off", "environment")  # conftest
    assert "bad setting" not in out


def test_doctor_names_a_bad_setting(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"tonic": {"engin": "replay"}}))
    env = dict(os.environ, COLUMNS="250", TONIC_MAX_BYTES="lots")
    got = tonic("doctor", cwd=tmp_path, env=env)
    out = got.stdout.decode()
    assert got.code == 0, got.describe()
    assert _doctor_rows(out)["TONIC_MAX_BYTES"] == ("lots", "environment (invalid)")
    assert "bad setting: TONIC_MAX_BYTES='lots' is not a size" in out
    assert "bad setting: " + str(tmp_path / "package.json") + ': unknown "tonic" setting' in out


# -- README -----------------------------------------------------------------------------


def test_readme_table_is_the_settings_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    assert settings.markdown_table() in section, "README.md's settings table is stale"
    rows = [ln for ln in section.splitlines() if ln.startswith("| `TONIC_")]
    assert [r.split("`")[1] for r in rows] == [s.variable for s in settings.TABLE]


def test_every_tonic_variable_is_in_the_table() -> None:
    """tonic's sources name no TONIC_* variable besides the table's and the kernel's plan;
    only tonic/settings/ and launch.py (the exception) read one from the environment."""
    known = {s.variable for s in settings.TABLE} | {"TONIC_KERNEL_PLAN"}
    readers = set()
    for path in sorted((ROOT / "tonic").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"\bTONIC_[A-Z_]+\b", text):
            assert name in known, f"{path.relative_to(ROOT)} names {name}"
        if re.search(r"environ(?:\.get\(|\[)\s*[\"']TONIC_(?!KERNEL_PLAN)", text):
            readers.add(path.relative_to(ROOT).as_posix())
    assert readers <= {"tonic/launch.py"}, readers


# -- layers and global state -----------------------------------------------------------


def test_nothing_steers_through_the_process_environment() -> None:
    """No part of tonic writes os.environ or changes directory, but the warm server's
    worker taking on its client's (server.py)."""
    writes = re.compile(
        r"os\.environ(?:b)?\s*\[[^\]]+\]\s*=|os\.environ(?:b)?\.(?:update|pop|clear|setdefault)\("
        r"|del\s+os\.environ|os\.putenv\(|os\.unsetenv\(|os\.chdir\("
    )
    for path in sorted((ROOT / "tonic").rglob("*.py")):
        if path.name == "server.py" and path.parent.name == "tonic":
            continue
        found = writes.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(ROOT)}: {found}"


# -- recorded runs (tonic check, tonic export) ------------------------------------------

SHOW_ENV = """// %% Where
console.log(JSON.stringify([process.cwd(), process.env.GIT_AUTHOR_DATE ?? null]));
"""


def test_record_changes_nothing_of_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tonic check` and `tonic export` record runs from the notebook's folder without git's
    hook variables: through the Program, not by changing this process; a hook variable
    reaches neither the notebook's process.env nor the snapshot key."""
    from tonic import recorded
    from tonic.engines import Engine
    from tonic.engines.backend import Session
    from tonic.engines.snapshots import keys_for
    from tonic.kernel.program import Program
    from tonic.results import RunResult, Sink

    project = tmp_path / "project"
    project.mkdir()
    nb = project / "where.js"
    nb.write_text(SHOW_ENV)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("GIT_AUTHOR_DATE", "@1700000000 +0000")
    monkeypatch.setenv("PRE_COMMIT", "1")
    monkeypatch.setenv("TONIC_CACHE", os.path.relpath(os.environ["TONIC_CACHE"]))

    before_env, before_cwd = dict(os.environ), os.getcwd()
    seen: list[tuple[dict[str, str], str]] = []  # this process, while the engine runs
    engine_for = recorded.engine_for

    class Spy:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.name = engine.name

        def run(self, program: Program, sink: Sink, *, timeout: float | None = None) -> RunResult:
            seen.append((dict(os.environ), os.getcwd()))
            return self.engine.run(program, sink, timeout=timeout)

    def spy(chosen: settings.Settings, *, default: str | None = None) -> tuple[Spy, str | None]:
        engine, note = engine_for(chosen, default=default)
        return Spy(engine), note

    monkeypatch.setattr(recorded, "engine_for", spy)
    result = recorded.record(nb, timeout=60)
    assert seen == [(before_env, before_cwd)]
    assert dict(os.environ) == before_env
    assert os.getcwd() == before_cwd

    assert result.exit_code == 0
    assert json.loads(result.cells[0].stdout) == [str(project), None]

    program = recorded.record_program(nb)
    assert program.cwd == project
    assert "GIT_AUTHOR_DATE" not in program.env and "PRE_COMMIT" not in program.env
    assert program.env["TONIC_CACHE"] == os.path.abspath(os.environ["TONIC_CACHE"])
    assert settings.current().cache == Path(os.path.abspath(os.environ["TONIC_CACHE"]))

    def base(program: Program) -> str:
        return keys_for("criu", program, Session(kernel=lambda: None)).base  # type: ignore[arg-type, return-value]

    with_hook = base(program)
    monkeypatch.delenv("GIT_AUTHOR_DATE")
    monkeypatch.delenv("PRE_COMMIT")
    assert base(recorded.record_program(nb)) == with_hook
    monkeypatch.setenv("SOMETHING_ELSE", "1")  # counts only where a cell reads it
    assert base(recorded.record_program(nb)) == with_hook
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # node reads it natively: in the key
    assert base(recorded.record_program(nb)) != with_hook


def test_record_environment_drops_hook_variables() -> None:
    from tonic.recorded import record_environment

    env = {
        "PATH": os.pathsep.join(["/usr/lib/git-core", "/usr/bin"]),
        "GIT_EXEC_PATH": "/usr/lib/git-core",
        "GIT_AUTHOR_DATE": "@1 +0000",
        "PRE_COMMIT_HOME": "/x",
        "GIT_CONFIG_GLOBAL": "/dev/null",  # the user's, not a hook's
        "HOME": "/home/me",
    }
    assert record_environment(env) == {
        "PATH": "/usr/bin",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "HOME": "/home/me",
    }
    assert env["GIT_AUTHOR_DATE"] == "@1 +0000"  # the argument is left alone
