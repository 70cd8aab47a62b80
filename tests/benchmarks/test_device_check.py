"""`benchmarks/device_check.sh`, the prepared accelerator check: its shell parses, and its dry run
(every path, the pyproject extras, each python command's arguments validated without running
anything) passes on a CPU machine; a bad argument is one line and status 2."""

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "device_check.sh"


def test_dry_run_checks_every_command_and_path(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    data, log = tmp_path / "data", tmp_path / "log"
    data.mkdir()
    argv = ["bash", str(SCRIPT), "--dry-run", "--log-dir", str(log), "--data-dir", str(data)]
    proc = subprocess.run(
        [*argv, "--python", sys.executable], capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "dry run: every check passed" in out and "FAIL" not in out
    for check in ("path tests/test_accelerator.py", "pip: ", "register: ", "preflight: ",
                  "tests: ", "compare_vgg16: ", "compare_resnet18: ", "flops: ", "epoch: ",
                  "report: "):  # fmt: skip
        assert f"\nok   {check}" in out, (check, out)
    assert "--batch-sizes 128 512" in out and "--methods standard mwt moda" in out
    assert f"note no cifar10* under {data}" in out  # the epoch stage's data, reported
    assert [p.name for p in log.iterdir()] == ["stages.tsv"]  # nothing was run
    assert (log / "stages.tsv").read_text() == ""


def test_bad_argument_is_one_line():
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--budget-s", "soon"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("device_check.sh: error: --budget-s soon is not a number of seconds\n")
