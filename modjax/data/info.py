"""Dataset metadata types: `DatasetInfo`, its on-disk `Layout`s and its `RemoteFile`s."""

import dataclasses
import types
from collections.abc import Mapping

__all__ = ["DatasetInfo", "Files", "Layout", "RemoteFile", "frozen"]

Files = Mapping[str, tuple[str, ...]]
"""Split name -> paths (relative to the data dir) that must all exist to read that split."""


def frozen(mapping: Mapping) -> Mapping:
    """A read-only copy of `mapping`, for the mapping fields of the frozen dataclasses."""
    return types.MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, its registered checksum and where it lands.

    Attributes:
        url: canonical URL (the one TensorFlow Datasets registers).
        path: destination relative to the data dir; a mirror (`base_url`) serves this same path.
        sha256: registered checksum, or None when unknown; `download` refuses unknown checksums.
        size: registered size in bytes, or None.
        extract: whether the file is an archive (`.tar.gz`, `.zip`) extracted into its own
            directory and then deleted.
        provides: for archives, the extracted paths (relative to the data dir) that make a new
            download unnecessary.
    """

    url: str
    path: str
    sha256: str | None
    size: int | None = None
    extract: bool = False
    provides: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Layout:
    """One on-disk form a dataset can be read from: a reader format and the files per split."""

    format: str
    files: Files = dataclasses.field(hash=False)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What modjax knows about one dataset.

    Attributes:
        name: TFDS-style name, e.g. `"cifar10"`, `"emnist/letters"`.
        num_classes: number of classes; labels lie in `[0, num_classes)`.
        image_shape: `(H, W, C)` of one image.
        mean: per-channel mean in [0, 1] units, used by `make_preprocess`.
        std: per-channel standard deviation in [0, 1] units.
        class_names: one name per label.
        files: the canonical raw files per split (what `download` produces), relative to the
            data dir; empty for the embedded `digits`.
        format: the reader for `files` (see `modjax.data.readers.READERS`).
        num_examples: split -> expected number of examples; `load` checks it.
        augment_crop_pad: zero padding of the train-time random crop (0 = no crop).
        augment_flip: whether train-time augmentation flips horizontally (p = 0.5).
        alternatives: other layouts `load` also accepts, tried after `files`.
        downloads: the files `download` fetches.
        label_offset: subtracted from stored labels (EMNIST letters are stored as 1..26).
        transpose: whether stored images are transposed (EMNIST) and must be swapped back.
        unsupported: paths of known forms modjax deliberately does not read, with the reason,
            so errors can say why a present directory is ignored.
        tfds_name: the TFDS name used by the TFDS backend, or None when TFDS has no copy.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    files: Files = dataclasses.field(hash=False)
    format: str
    num_examples: Mapping[str, int] = dataclasses.field(hash=False)
    augment_crop_pad: int = 0
    augment_flip: bool = False
    alternatives: tuple[Layout, ...] = ()
    downloads: tuple[RemoteFile, ...] = ()
    label_offset: int = 0
    transpose: bool = False
    unsupported: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    tfds_name: str | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names, e.g. `("train", "test")`."""
        return tuple(self.num_examples)

    def layouts(self) -> tuple[Layout, ...]:
        """The canonical layout followed by the alternatives, in the order `load` tries them."""
        canonical = (Layout(self.format, self.files),) if self.files else ()
        return canonical + self.alternatives
