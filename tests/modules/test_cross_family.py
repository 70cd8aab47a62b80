"""One classifier from modules of three families and four parents, made with the CLI only,
exported, and run in a process that cannot import modjax."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from modjax import data
from modjax.cli import main
from modjax.modules import export
from modjax.runs import compose as run_compose

TRAIN = ["train", "--dataset", "digits", "--no-progress", "--global-batch-size", "64"]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Module directories of four parents: MODA MLP (class 3), MwT MLP (class 1), Pan & Rajan
    decomposition of a standard MLP (class 5), DeepArc-shrunk ResNet-14 (classes 7 and 8)."""
    root = tmp_path_factory.mktemp("cross")
    mlp = ["--model", "mlp", "--depth", "2", "--num-epochs", "8"]
    runs = {
        "moda": [*mlp, "--method", "moda", "--seed", "0"],
        "mwt": [*mlp, "--method", "mwt", "--seed", "1"],
        "standard": [*mlp, "--seed", "2"],
        "resnet": ["--model", "resnet14", "--width", "0.5", "--num-epochs", "6", "--seed", "3"],
    }
    for name, argv in runs.items():
        assert main([*TRAIN, *argv, "--workdir", str(root / name)]) == 0
    for name in ("moda", "mwt"):
        out = root / name / "modules"
        assert (
            main(["modularize", "--workdir", str(root / name), "--out", str(out), "--no-progress"])
            == 0
        )
    assert main(["decompose", "--workdir", str(root / "standard"), "--out", str(root / "pr"),
                 "--method", "panrajan", "--allow-fewer"]) == 0  # fmt: skip
    assert main(["shrink", "--workdir", str(root / "resnet"), "--out", str(root / "shrink"),
                 "--remove", "3"]) == 0  # fmt: skip
    return {
        "moda": root / "moda" / "modules" / "class_3",
        "mwt": root / "mwt" / "modules" / "class_1",
        "panrajan": root / "pr" / "class_5",
        "deeparc": root / "shrink" / "network",
        "root": root,
    }


def test_cross_family_classifier(members, capsys, tmp_path):
    dirs = [
        str(members["moda"]),
        str(members["mwt"]),
        str(members["panrajan"]),
        f"{members['deeparc']}:7,8",
    ]
    out, exported = tmp_path / "composed.json", tmp_path / "composed.zip"
    argv = [
        "compose",
        "--modules",
        *dirs,
        "--calibrate",
        "--calibration",
        "platt",
        "--out",
        str(out),
    ]
    assert main([*argv, "--export", str(exported)]) == 0, capsys.readouterr().err
    value = json.loads(out.read_text())
    assert value["classes"] == [3, 1, 5, 7, 8]
    assert [g["method"] for g in value["groups"]] == ["moda", "mwt", "panrajan", "deeparc"]
    assert len({g["hash"] for g in value["groups"]}) == 4  # four parents

    # Against each member's own accuracy: its parent's per-class test accuracy on the same
    # images (summary.json); the composition may only lose what another member claims.
    parent_of = {3: "moda", 1: "mwt", 5: "standard", 7: "resnet", 8: "resnet"}
    per_class = {r["output_id"]: r["accuracy"] for r in value["per_class"]}
    own = {}
    for c, run in parent_of.items():
        summary = json.loads((members["root"] / run / "summary.json").read_text())
        own[c] = summary["per_class_accuracy"][c]
    print("composed", value["accuracy"], per_class, "own", own)
    for c in parent_of:
        assert per_class[c] >= own[c] - 0.25, (c, per_class, own)
    assert value["accuracy"] >= min(own.values()) - 0.1, (value["accuracy"], own)
    # Platt calibration is what makes the families comparable: raw scores and MODA's min-max
    # over positives are both worse here.
    for rule in ("raw", "minmax"):
        r = run_compose.compose_dirs(dirs, calibrate=rule != "raw", calibration="minmax")
        assert r["accuracy"] < value["accuracy"], (rule, r["accuracy"], value["accuracy"])

    # The export runs where modjax cannot be imported, and agrees with the composition.
    images, labels = data.load("digits", "test")
    x = images[np.isin(labels, [1, 3, 5, 7, 8])][:64].astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    composed, _ = run_compose.build_composition(
        run_compose.load_dirs(dirs), select=run_compose.selection(dirs)
    )
    composed = run_compose.calibrate_on_train(composed, data_dir=None, batch_size=256, rule="platt")
    want = np.asarray(composed.apply_fn(x))
    script = (
        textwrap.dedent(
            """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "modjax" or name.startswith("modjax."):
                    raise ImportError("modjax is blocked in this process")
        sys.meta_path.insert(0, Block())
        import numpy as np
        """
        )
        + export.LOADER_SOURCE
        + textwrap.dedent(
            f"""
        classify, meta = load_classifier({str(exported)!r})
        scores = np.asarray(classify(np.load({str(tmp_path / "x.npy")!r})))
        np.save({str(tmp_path / "y.npy")!r}, scores)
        assert not any(m == "modjax" or m.startswith("modjax.") for m in sys.modules)
        print(meta["classes"], [m["method"] for m in meta["members"]])
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "[3, 1, 5, 7, 8]" in done.stdout
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-5)
