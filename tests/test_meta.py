"""Keep the public surface honest: exports, hooks, docstrings and tests for each hook."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import asapp_auth
from asapp_auth import hookspecs

TESTS = Path(__file__).parent


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and names every public attribute the package imports."""
    assert asapp_auth.__all__ == sorted(asapp_auth.__all__)
    public = {name for name in vars(asapp_auth) if not name.startswith("_")}
    public -= {"annotations"}
    submodules = {n for n in public if inspect.ismodule(getattr(asapp_auth, n))} - {"errors"}
    assert set(asapp_auth.__all__) == (public - submodules) | {"__version__"}


def _hooks() -> list[str]:
    # Every function hookspecs.py marks with @hookspec, whatever its name.
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, value in vars(hookspecs).items() if hasattr(value, marker))


def test_every_hook_is_documented_with_who_calls_it_and_what_none_means() -> None:
    """Each hookspec has a docstring saying who calls it and what its return value means."""
    for name in _hooks():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        # The pipeline calls most hooks; the asapp-auth command line calls register_commands.
        assert "by the pipeline" in doc or "by ``asapp-auth``" in doc, name
        assert "None" in doc or "ignored" in doc, name


def test_every_hook_has_a_test_that_implements_it() -> None:
    """Every hook is implemented by at least one test plugin in the test suite."""
    sources = "\n".join(p.read_text() for p in TESTS.glob("test_*.py"))
    for name in _hooks():
        assert f"def {name}(" in sources, f"no test implements the {name} hook"


def test_types_are_named_with_their_article_by_one_helper() -> None:
    """Only asapp_auth.errors.type_with_article picks "a" or "an": the core and the bundled
    plugins name a value's type alike because they share it."""
    root = TESTS.parent
    helper = root / "src" / "asapp_auth" / "errors.py"
    sources = [*(root / "src").rglob("*.py"), *root.glob("plugins/*/src/**/*.py")]
    choosing = [
        path.relative_to(root).as_posix()
        for path in sources
        if path != helper and re.search(r"""['"]an['"] if """, path.read_text(encoding="utf-8"))
    ]
    assert sources
    assert choosing == []
