"""Keep the docs honest: hook signatures match hookspecs.py, and every Python example runs
(the docs pages' and the README's)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asapp_auth import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS_PAGE = DOCS / "hooks.md"
NO_TEST = "<!-- no-test -->"

# A fenced block: its opening fence (``` or more), info string, body and matching closing fence.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)

# A pymdownx.snippets include, as mkdocs.yml configures it (base_path "."): the line
# ``--8<-- "PATH"`` stands for the file at PATH, relative to the repository root.
_SNIPPET = re.compile(r'^(?P<indent>[ \t]*)-+8<-+[ \t]+"(?P<path>[^"\n]+)"[ \t]*$', re.MULTILINE)

# Runs one page's blocks in order, in one namespace; reports the failing block by its line.
_RUNNER = """
import json, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__docs__"}
for line, source in blocks:
    try:
        exec(compile(source, f"{sys.argv[1]}:{line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the block at {sys.argv[1]}:{line}", file=sys.stderr)
        sys.exit(1)
"""


def _hook_names() -> list[str]:
    # Every function hookspecs.py marks with @hookspec, whatever its name.
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, value in vars(hookspecs).items() if hasattr(value, marker))


def _expected_signature(name: str) -> str:
    """``def name(a: A, b: B) -> R:`` from the hookspec, annotations as written in the source."""
    signature = inspect.signature(getattr(hookspecs, name))
    params = []
    for param in signature.parameters.values():
        annotation = param.annotation
        text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        params.append(f"{param.name}: {text}")
    returns = signature.return_annotation
    ret = returns if isinstance(returns, str) else inspect.formatannotation(returns)
    return f"def {name}({', '.join(params)}) -> {ret}:"


def _normalise(code: str) -> str:
    """One line per ``def``: white space collapsed, none after ``(`` or before ``)``."""
    code = re.sub(r"\s+", " ", code)
    code = re.sub(r"\(\s+", "(", code)
    return re.sub(r",?\s+\)", ")", code)


def _documented_defs(page: Path) -> dict[str, list[str]]:
    """The ``def`` signatures in the page's code blocks, by function name."""
    found: dict[str, list[str]] = {}
    for match in _FENCE.finditer(page.read_text(encoding="utf-8")):
        body = _normalise(match["body"])
        for sig in re.finditer(r"\bdef (\w+)\([^)]*\)(?: -> [^:]+?)?:", body):
            found.setdefault(sig[1], []).append(sig[0])
    return found


@pytest.mark.parametrize("hook", _hook_names())
def test_hook_signature_appears_in_hooks_page(hook: str) -> None:
    """The hooks page shows each hook with exactly the hookspec's parameters, types and return."""
    documented = _documented_defs(HOOKS_PAGE)
    assert hook in documented, f"docs/hooks.md does not document the {hook} hook"
    assert _expected_signature(hook) in documented[hook], (
        f"docs/hooks.md shows {documented[hook]}, not {_expected_signature(hook)!r}"
    )


def test_hooks_page_documents_no_hook_that_does_not_exist() -> None:
    """The hooks page's hook sections are exactly the hookspecs: none missing, none made up."""
    text = HOOKS_PAGE.read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (\w+)$", text, re.MULTILINE))
    hook_like = {h for h in headings if h.replace("_", "").isalpha() and "_" in h}
    assert hook_like == set(_hook_names())


def _expand_snippets(code: str) -> str:
    """``code`` with each snippet line replaced by the file it includes, as the docs show it."""

    def include(match: re.Match[str]) -> str:
        path = ROOT / match["path"]
        assert path.is_file(), f"a snippet includes {match['path']!r}, which is no file"
        return textwrap.indent(path.read_text(encoding="utf-8").rstrip("\n"), match["indent"])

    return _SNIPPET.sub(include, code)


def _python_blocks(page: Path) -> list[tuple[int, str]]:
    """The page's ```python blocks as (line, source), snippets included, bar those just after
    ``<!-- no-test -->``."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        if match["info"].strip().split(" ")[0] != "python":
            continue
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        if before == NO_TEST:
            continue
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        body = _expand_snippets(body)
        blocks.append((text.count("\n", 0, match.start()) + 2, body))
    return blocks


PAGES = sorted(DOCS.rglob("*.md"))


def test_docs_pages_are_found() -> None:
    """The docs tree holds the pages these tests check, so an empty glob cannot pass silently."""
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "concepts.md", "hooks.md", "writing-plugins.md", "testing.md"} <= names


def _run_examples(page: Path, cwd: Path) -> None:
    """Run the page's Python examples as ``test_python_examples_run`` describes."""
    blocks = _python_blocks(page)
    if not blocks:
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPP_AUTH_")}
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(page.relative_to(ROOT))],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    """Every ```python block of a page runs without error, in order, in one fresh interpreter."""
    _run_examples(page, tmp_path)


def test_readme_examples_run(tmp_path: Path) -> None:
    """The README's Python examples run as the docs pages' do, so its "Use" snippet works."""
    assert _python_blocks(ROOT / "README.md"), "the README shows no Python example"
    _run_examples(ROOT / "README.md", tmp_path)


def test_snippets_include_files_that_exist() -> None:
    """Every snippet include in the docs names a file of the repository."""
    included = [m["path"] for p in PAGES for m in _SNIPPET.finditer(p.read_text("utf-8"))]
    assert included, "no page includes a snippet: the check below would pass silently"
    missing = [path for path in included if not (ROOT / path).is_file()]
    assert missing == []


def test_example_plugin_source_is_shown_from_its_file() -> None:
    """The writing-plugins page shows the example plugin's module through a snippet include,
    so the page cannot drift from the code the example's tests run."""
    page = (DOCS / "writing-plugins.md").read_text(encoding="utf-8")
    included = {m["path"] for m in _SNIPPET.finditer(page)}
    assert "examples/asapp-auth-example/src/asapp_auth_example/plugin.py" in included
    blocks = [source for _, source in _python_blocks(DOCS / "writing-plugins.md")]
    assert any("class SessionServiceProvider" in source for source in blocks)


def test_skipped_examples_are_few() -> None:
    """At most two Python examples in the whole docs are marked ``<!-- no-test -->``."""
    skipped = sum(p.read_text(encoding="utf-8").count(NO_TEST) for p in PAGES)
    assert skipped <= 2


def test_reference_page_lists_the_public_surface() -> None:
    """The API reference lists every name in ``asapp_auth.__all__`` but the version and modules."""
    import asapp_auth

    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    section = text.split("::: asapp_auth\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\s+- (\w+)$", section, re.MULTILINE))
    public = {
        name
        for name in asapp_auth.__all__
        if name != "__version__" and not inspect.ismodule(getattr(asapp_auth, name))
    }
    assert listed == public


# A mkdocstrings directive of the reference page, with its indented options.
_DIRECTIVE = re.compile(r"^::: (?P<path>[\w.]+)\n(?P<options>(?:[ \t]+\S.*\n?)*)", re.MULTILINE)


def _public_modules() -> dict[str, object]:
    """Every module of the ``asapp_auth`` package, by dotted name."""
    import importlib
    import pkgutil

    import asapp_auth

    found: dict[str, object] = {"asapp_auth": asapp_auth}
    for info in pkgutil.iter_modules(asapp_auth.__path__, "asapp_auth."):
        if not info.name.rpartition(".")[2].startswith("_"):
            found[info.name] = importlib.import_module(info.name)
    return found


def _documented_in_reference() -> set[int]:
    """The ``id`` of each module and object the API reference page renders."""
    documented: set[int] = set()
    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    modules = _public_modules()
    for match in _DIRECTIVE.finditer(text):
        module = modules[match["path"]]
        documented.add(id(module))
        options = match["options"]
        if "members:" in options:
            members = re.findall(r"^\s+- (\w+)$", options.split("members:", 1)[1], re.MULTILINE)
        else:
            members = [name for name in getattr(module, "__all__", ()) if name != "__version__"]
        documented |= {id(getattr(module, name)) for name in members}
    return documented


def _resolve(name: str, modules: dict[str, object]) -> object | None:
    """The object a name in the docs stands for: a dotted path under ``asapp_auth``, or a bare
    name that one public module exports in its ``__all__``; ``None`` for anything else."""
    if name.startswith("asapp_auth"):
        path = name.split(".")
        for cut in range(len(path), 0, -1):
            obj = modules.get(".".join(path[:cut]))
            if obj is None:
                continue
            for attr in path[cut:]:
                obj = getattr(obj, attr, None)
            return obj
        return None
    owners = [m for m in modules.values() if name in getattr(m, "__all__", ())]
    return getattr(owners[0], name) if owners else None


def _names_mentioned(page: Path) -> set[str]:
    """Names the page shows: the leading dotted name of each inline code span, and what its
    Python examples import from ``asapp_auth`` (snippets included)."""
    text = page.read_text(encoding="utf-8")
    prose = _FENCE.sub("", text)
    names = {m[1] for m in re.finditer(r"`@?([A-Za-z_][\w.]*)[^`]*`", prose)}
    imports = re.compile(r"^from (asapp_auth[\w.]*) import ([^\n(]+)", re.MULTILINE)
    for _, source in _python_blocks(page):
        for module, imported in imports.findall(source):
            names |= {f"{module}.{n.strip()}" for n in imported.split(",") if n.strip()}
    return names


def test_reference_documents_every_public_name_the_plugin_guide_mentions() -> None:
    """Every asapp-auth name the Writing plugins page tells authors to use is in the API
    reference, so that a plugin author can look each one up."""
    modules = _public_modules()
    documented = _documented_in_reference()
    mentioned = {
        name: obj
        for name in _names_mentioned(DOCS / "writing-plugins.md")
        if (obj := _resolve(name, modules)) is not None
    }
    assert len(mentioned) >= 8, f"too few names found for this check to mean much: {mentioned}"
    missing = sorted(name for name, obj in mentioned.items() if id(obj) not in documented)
    assert missing == [], f"docs/reference.md does not document {missing}"


def _first_section(page: Path) -> tuple[str, str]:
    """The title and text of the page's first ``##`` section."""
    text = page.read_text(encoding="utf-8")
    title, _, rest = text.split("\n## ", 1)[1].partition("\n")
    return title, rest.split("\n## ", 1)[0]


def test_shared_cache_page_opens_with_a_minimal_fleet_setup_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared-cache page starts with a minimal fleet setup that shows the checkout form of
    the extra, and whose configuration file builds a pipeline on a Redis cache as it is."""
    from asapp_auth import AuthPipeline
    from asapp_auth.redis_cache import RedisContextCache
    from asapp_auth.sealing import generate_key

    title, section = _first_section(DOCS / "shared-cache.md")
    assert title == "A minimal fleet setup"
    assert "`pip install '.[redis]'`" in section
    assert "`asapp-auth keygen`" in section
    toml = [m["body"] for m in _FENCE.finditer(section) if m["info"].strip() == "toml"]
    assert len(toml) == 1, "the minimal setup shows one configuration file"
    config = tmp_path / "asapp-auth.toml"
    config.write_text(textwrap.dedent(toml[0]), encoding="utf-8")
    monkeypatch.setenv("ASAPP_AUTH_CACHE_KEY", generate_key())
    monkeypatch.setenv("CHAT_TOKEN", "tok-from-the-environment")
    monkeypatch.chdir(tmp_path)
    pipeline = AuthPipeline.from_config()
    assert isinstance(pipeline._cache, RedisContextCache)
    pipeline._cache.close()


def _pyproject_extras(project: Path) -> set[str]:
    import tomllib

    with (project / "pyproject.toml").open("rb") as file:
        return set(tomllib.load(file)["project"].get("optional-dependencies", {}))


def test_install_commands_name_extras_that_exist() -> None:
    """Every ``pip install`` of a distribution with an extra, in the README and the docs, names
    a distribution of this repository (its folder or its name) and an extra it declares."""
    folders = {".": ROOT, "asapp-auth": ROOT}
    for plugin in (ROOT / "plugins").glob("asapp-auth-*"):
        folders[plugin.name] = folders[f"plugins/{plugin.name}"] = plugin
    commands = re.compile(r"pip install (?:-e )?'([\w./-]+)\[(\w+)\]'")
    found = []
    for page in [ROOT / "README.md", *PAGES]:
        for target, extra in commands.findall(page.read_text(encoding="utf-8")):
            found.append((page.name, target, extra))
            assert target in folders, f"{page.name}: pip install names {target!r}"
            assert extra in _pyproject_extras(folders[target]), f"{page.name}: {target}[{extra}]"
    assert ("shared-cache.md", ".", "redis") in found


def test_readme_says_where_the_docs_build_lands_and_how_to_serve_it() -> None:
    """The README names the folder mkdocs builds the docs into, and a command that serves it."""
    site = "site"
    for line in (ROOT / "mkdocs.yml").read_text(encoding="utf-8").splitlines():
        if line.startswith("site_dir:"):
            site = line.partition(":")[2].strip().strip("'\"")
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert any("dev.py nox -s docs" in line and f"into {site}/" in line for line in lines)
    assert any(line.startswith(f"python3 -m http.server -d {site} ") for line in lines)
