"""Module replacement (METHODS §5.7) on the embedded digits: weak-model repair in about a minute.

Run: python experiments/replace_digits.py [seed] [--cache DIR]   (~1 min on a 2-core CPU)

The protocol of `moda_replace.py` at toy size: MLPs instead of LeNet5/VGG16, one target class,
a few epochs. Prints the per-class accuracies and the "TC | mean non-TC" changes of the
CNNSplitter-style baseline and the MODA adapter, for the underfitted and the overfitted weak
model. `experiments/reproduce.py moda_replace` is the seeded table at CPU and paper scale.
"""

import argparse
import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import moda_replace  # noqa: E402


def get_config():
    return moda_replace.config(
        dataset="digits",
        target_classes=(2,),
        strong_model=dict(name="mlp", depth=2),
        weak_model=dict(name="mlp", depth=1, hidden=16),
        strong_epochs=20,
        underfit_epoch=3,
        overfit_epoch=20,
        weak_epochs=20,
        batch_size=32,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed", nargs="?", type=int, default=0)
    parser.add_argument("--cache", help="keep the trained networks here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = moda_replace.run_seed(get_config(), seed=args.seed, cache=args.cache or tmp)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
