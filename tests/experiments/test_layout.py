"""The layout of experiments/: packages run with `python -m`, configs that say how to run them,
package imports only (no sys.path edits), and no imports from tests/."""

import ast
import importlib
import re

import pytest

from modjax.runs import config as config_lib
from tests.conftest import REPO

EXPERIMENTS = REPO / "experiments"
PROJECTS = sorted(p.name for p in EXPERIMENTS.iterdir() if (p / "__main__.py").is_file())


def test_every_project_is_a_package_with_configs():
    assert {"compare", "deeparc", "module_report", "panrajan", "reproduce"} <= set(PROJECTS)
    for name in PROJECTS:
        assert (EXPERIMENTS / name / "__init__.py").is_file(), name
        assert list((EXPERIMENTS / name / "configs").glob("*.py")), name
    loose = [p.name for p in EXPERIMENTS.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"scripts outside a project: {loose}"


@pytest.mark.parametrize("name", [p for p in PROJECTS if p != "compare"])
def test_help_starts_with_the_module_command(name, capsys):
    main = importlib.import_module(f"experiments.{name}.__main__").main
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert f"python -m experiments.{name}" in capsys.readouterr().out


def _configs():
    return sorted(
        p
        for p in EXPERIMENTS.rglob("configs/*.py")
        if "compare" not in p.parts  # another project's own tests
    )


@pytest.mark.parametrize("path", _configs(), ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_config_docstring_starts_with_its_command_and_runtime(path):
    doc = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
    paragraphs = doc.split("\n\n")  # a one-line title, then the command (same or next paragraph)
    first = "\n".join(paragraphs[:2]) if not paragraphs[0].count("Run:") else paragraphs[0]
    assert "Run:" in first, f"{path}: the docstring does not start with its 'Run:' command"
    run = first[first.index("Run:") :]
    command = run.split("\n")[0]
    assert re.search(r"python -m experiments\.\w+|modjax \w+|cp -r", command), command
    assert re.search(r"~?\d+.*(s|min|h|hour|hours|seconds)\b|minutes|hours|days|seconds", doc), path
    assert isinstance(config_lib.load_config_file(path), dict)


def test_no_sys_path_edits_and_no_imports_from_tests():
    for root in ("experiments", "benchmarks"):
        for path in (REPO / root).rglob("*.py"):
            text = path.read_text()
            tree = ast.parse(text)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert node.module.split(".")[0] != "tests", f"{path} imports {node.module}"
                if isinstance(node, ast.Import):
                    assert all(a.name.split(".")[0] != "tests" for a in node.names), path
            assert "sys.path" not in text, f"{path} edits sys.path"
