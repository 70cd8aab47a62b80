"""The bad-input catalogue's cases for commands that read or write module directories and
networks (modularize, compose, replace, pipeline, data, decompose, arch/shrink/repair): data for
`tests/test_bad_inputs.py`, in `tests/bad_input_cases.py`'s format."""

import pathlib
import shutil

from tests.bad_input_cases import SMOKE_MODA


def _with_extra_file(trained, tmp) -> pathlib.Path:
    module = pathlib.Path(shutil.copytree(trained["modules"] / "class_5", tmp / "class_5"))
    (module / "notes.txt").write_text("x")
    return module


def _panrajan(trained, tmp) -> pathlib.Path:
    """Pan & Rajan modules of the standard run (another parent than the MODA run's), ~2 s."""
    from modjax.cli import main

    out = tmp / "panrajan"
    flags = ["--confidence", "0", "--positives", "3", "--negatives", "2", "--ti", "i"]
    assert main(["decompose", "--workdir", str(trained["std"]), "--out", str(out), *flags]) == 0
    return out


MODULE_CASES = [
    (
        "modularize-standard-run",
        lambda t, d: (["modularize", "--workdir", str(t["std"]), "--out", str(d / "m")], d / "m"),
        "modularize needs a run trained with one of",
    ),
    (
        "modularize-out-exists",
        lambda t, d: (
            ["modularize", "--workdir", str(t["moda"]), "--out", str(t["modules"])],
            t["modules"],
        ),
        "exists; remove it or choose another directory",
    ),
    (
        "modularize-threshold",
        lambda t, d: (
            [
                "modularize",
                "--workdir",
                str(t["moda"]),
                "--threshold",
                "1.5",
                "--out",
                str(d / "m"),
            ],
            d / "m",
        ),
        "--threshold=1.5 must be in (0, 1]",
    ),
    (
        "compose-missing-dir",
        lambda t, d: (["compose", "--modules", str(d / "class_3")], None),
        "class_3",
    ),
    (
        "compose-edited-manifest",
        lambda t, d: (
            [
                "compose",
                "--modules",
                str(
                    (
                        lambda m: (
                            (m / "manifest.json").write_text(
                                (m / "manifest.json")
                                .read_text()
                                .replace('"classes": [', '"classes": [9, ')
                            ),
                            m,
                        )[1]
                    )(pathlib.Path(shutil.copytree(t["modules"] / "class_3", d / "class_3")))
                ),
            ],
            None,
        ),
        "manifest.json",
    ),
    (
        "compose-extra-file",
        lambda t, d: (["compose", "--modules", str(_with_extra_file(t, d))], None),
        "notes.txt",
    ),
    (
        "compose-same-dir-twice",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), str(t["modules"] / "class_3")],
            None,
        ),
        "class_3 is given twice (also as",
    ),
    (
        "compose-folder-and-its-module",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"]), str(t["modules"] / "class_5")],
            None,
        ),
        "class_5 is given twice",
    ),
    (
        "compose-one-class-of-two-parents",
        lambda t, d: (
            [
                "compose",
                "--modules",
                str(t["modules"] / "class_3"),
                str(_panrajan(t, d) / "class_3"),
                "--relabel",
                "digits:3=13",
            ],
            None,
        ),
        "Relabelling (--relabel DATASET:CLASS=NEW) separates classes of different datasets only",
    ),
    (
        "compose-relabel-negative",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), "--relabel", "digits:3=-1"],
            None,
        ),
        "class ids must be >= 0",
    ),
    (
        "compose-relabel-malformed",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), "--relabel", "3to5"],
            None,
        ),
        "must look like DATASET:CLASS=NEW",
    ),
    (
        "compose-out-is-dir",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), "--out", str(d)],
            None,
        ),
        "is a directory",
    ),
    (
        "compose-export-exists",
        lambda t, d: (
            [
                "compose",
                "--modules",
                str(t["modules"] / "class_3"),
                str(t["modules"] / "class_5"),
                "--export",
                str((d / "c.zip").write_bytes(b"old") and d / "c.zip"),
            ],
            d / "c.zip",
        ),
        "exists; pass --overwrite",
    ),
    (
        "replace-module-of-another-class",
        lambda t, d: (
            [
                "replace",
                "--weak-workdir",
                str(t["std"]),
                "--module",
                str(t["modules"] / "class_3"),
                "--target-class",
                "5",
                "--out",
                str(d / "r.json"),
            ],
            d / "r.json",
        ),
        "--target-class=5 is not the class of --module",
    ),
    (
        "pipeline-one-class",
        lambda t, d: (
            ["pipeline", "--config", SMOKE_MODA, "--classes", "3", "--workdir", str(d / "p")],
            d / "p",
        ),
        "at least 2 distinct class ids",
    ),
    (
        "data-unknown",
        lambda t, d: (["data", "download", "imagenet9", "--data-dir", str(d / "data")], d / "data"),
        "imagenet9",
    ),
    # DeepArc's numeric flags are typed by range (cli/flags.py): refused before the run opens.
    *(
        (
            f"{cmd}-{flag.strip('-')}-{value}",
            lambda t, d, cmd=cmd, flag=flag, value=value: (
                [cmd, "--workdir", str(t["std"]), "--out", str(d / "o"), flag, value],
                d / "o",
            ),
            f"argument {flag}: {message}",
        )
        for cmd, flag, value, message in (
            ("arch", "--thresholds", "0", "0.0 is outside (0, 1]"),
            ("arch", "--examples", "0", "0 is below 1"),
            ("arch", "--passes", "0", "0 is below 1"),
            ("shrink", "--threshold", "1.5", "1.5 is outside (0, 1]"),
            ("shrink", "--search", "-1", "-1 is below 0"),
            ("repair", "--learning-rate", "nan", "'nan' is not a finite number"),
            ("repair", "--max-trained-share", "0", "0.0 is outside (0, 1]"),
            ("repair", "--eps", "-8", "-8.0 is not > 0"),
        )
    ),
    # The same typed flags on the other commands that train or select (argparse, before work).
    *(
        (f"{cmd}-{flag.strip('-')}-{value}", lambda t, d, a=(cmd, flag, value): (list(a), None), m)
        for cmd, flag, value, m in (
            ("decompose", "--confidence", "1.2", "argument --confidence: 1.2 is outside [0, 1)"),
            ("decompose", "--confidence", "1", "argument --confidence: 1.0 is outside [0, 1)"),
            ("decompose", "--delta", "0", "argument --delta: 0.0 is not > 0"),
            ("compose", "--finetune-lr", "nan", "argument --finetune-lr: 'nan' is not a finite"),
            ("replace", "--learning-rate", "inf", "argument --learning-rate: 'inf' is not a fin"),
        )
    ),
]
