"""Pan & Rajan's decompositions reproduced: FSE'20 (dense), KMNIST, ICSE'22 (CNN).

    python -m experiments.panrajan fse20  --config experiments/panrajan/configs/fse20_cpu.py ...
    python -m experiments.panrajan kmnist --config experiments/panrajan/configs/kmnist_cpu.py ...
    python -m experiments.panrajan icse22 --config experiments/panrajan/configs/icse22_cpu.py ...
    python -m experiments.panrajan ji     --workdir RUN --out RESULT.json

`python -m experiments.panrajan <command> --help` explains each command's flags; every config in
`experiments/panrajan/configs/` starts with its full command and runtime.
"""

import argparse
import logging

from experiments.panrajan import fse20, icse22, ji, kmnist
from modjax.runs import config as config_lib

COMMANDS = {
    "fse20": (fse20, "FSE'20 Table 1, reuse and replacement on MNIST and Fashion-MNIST MLPs"),
    "kmnist": (kmnist, "FSE'20 KMNIST rows and MNIST ← KMNIST inter-dataset replacement"),
    "icse22": (icse22, "ICSE'22 CNN decomposition of a CIFAR ResNet without BN, reuse, R32 ← R20"),
    "ji": (ji, "why ICSE'22 CNN modules overlap: per-layer CI/TI inactive positions of a parent"),
}


def _settings(module, path: str) -> dict:
    """A dense-model config's settings, exactly the keys `module.KEYS`."""
    settings = config_lib.load_config_file(path)
    wrong = sorted(set(settings) ^ set(module.KEYS))
    if wrong:
        raise SystemExit(
            f"--config {path}: keys missing or unknown {wrong}; expected {module.KEYS}"
        )
    return settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.panrajan",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=module.__doc__.split("\n\n")[0],
            epilog="\n\n".join(module.__doc__.split("\n\n")[1:]),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    module = COMMANDS[args.command][0]
    if module in (icse22, ji):
        return module.run(args, parser)
    return module.run(args, _settings(module, args.config))


if __name__ == "__main__":
    from experiments import run

    raise SystemExit(run(main, "python -m experiments.panrajan"))
