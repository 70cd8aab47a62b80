"""Every experiment entry point follows the CLI's error rule: one line, exit status 2."""

import importlib

import pytest

from experiments import run


@pytest.mark.parametrize(
    "project,argv",
    [
        ("reproduce", ["moda", "--scale-config", "{missing}"]),
        ("deeparc", ["--config", "{missing}", "--workdir", "{tmp}/w"]),
        ("panrajan", ["icse22", "--config", "{missing}", "--workdir", "{tmp}/w"]),
        ("module_report", ["--modules", "{tmp}/none"]),
    ],
)
def test_a_missing_file_is_one_line(project, argv, tmp_path, capsys):
    main = importlib.import_module(f"experiments.{project}.__main__").main
    argv = [a.format(missing=tmp_path / "none.py", tmp=tmp_path) for a in argv]
    prog = f"python -m experiments.{project}"
    assert run(lambda: main(argv), prog) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1, err
    assert "none" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()
