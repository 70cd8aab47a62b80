"""PyTorch reference implementations of the zoo models, MwT and MODA, written from METHODS.md.

Eager `nn.Module`s in the style of the papers' PyTorch code (masked conv layers with a mask
generator, losses in their pairwise B×B form, a per-class extraction loop), used by the parity
tests (`tests/benchmarks/test_torch_parity.py`) and the speed comparison
(`benchmarks/compare_torch.py`). One job per file:

- `layers`: the conv unit (Conv → BN → MwT mask generator) and the init schemes.
- `cnn`: LeNet5 and SimCNN; `vgg`: VGG16 (MwT and MODA variants); `resnet`: ResNet18.
- `losses`: cross-entropy, MwT cohesion/coupling and MODA affinity/dispersion/compactness.
- `train`: the optimizer and the standard / MwT / MODA train step.
- `extract`: the reference module extraction (one inference pass, then a per-class loop).
- `compose`: a pruned network for a task from per-layer keep-masks (sequential models).
- `weights`: copying modjax (Flax) variables into these models and gradients back.

Every model's `forward(x)` takes NCHW float32 and returns `(logits, acts)`: `acts` maps modjax's
layer names to post-ReLU activations (NCHW for convs) and `f"{conv}/mask"` to generator masks,
in forward order. Module names mirror modjax's parameter tree, so weights copy by name.
"""

from .cnn import LeNet5, SimCNN
from .resnet import ResNet18
from .vgg import VGG16

MODELS = {"lenet5": LeNet5, "simcnn": SimCNN, "vgg16": VGG16, "resnet18": ResNet18}
"""modjax zoo name → reference class."""


def get_model(name: str, **kwargs):
    """Builds the reference model for a modjax zoo name (`lenet5`, `simcnn`, `vgg16`, `resnet18`).

    Raises:
        ValueError: for a name with no reference implementation.
    """
    if name not in MODELS:
        raise ValueError(f"no PyTorch reference for model {name!r}; expected one of {list(MODELS)}")
    return MODELS[name](**kwargs)
