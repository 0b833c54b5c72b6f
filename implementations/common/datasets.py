"""Loaders for the standard dataset files: verified first, parsed in memory, cached per process.

Every loader takes the data directory (None: `resolve_data_dir()`) and a `manifest` of accepted
checksums (default: `checksums.MANIFEST`), so a caller (or a test with tiny files) can supply the
expected digests. Parsed arrays are cached per process, keyed by the files' (path, size, mtime), and
are read-only: take `subset()` or `to_tensors()` copies before changing anything.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import io
import os
import pickle
import re
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checksums import (
    MANIFEST,
    PNG_ARCHIVE_LIMITS,
    Checksum,
    DatasetCorrupt,
    DatasetMissing,
    ZipLimits,
    accepted_checksums,
    array_sha256,
    check_zip_members,
    decoding,
    file_identity,
    sha256_file,
    verify_array,
    verify_file,
    where_to_get,
)

__all__ = [
    "MANIFEST", "Checksum", "DatasetCorrupt", "DatasetMissing", "LabelledImages", "OmniglotImages",
    "CIFAR10_CLASS_NAMES", "resolve_data_dir", "sha256_file", "verify_file", "load_mnist",
    "load_fashion_mnist", "load_cifar10", "load_cifar100", "load_omniglot", "load_digits",
]

PathLike = str | os.PathLike


def resolve_data_dir(explicit: PathLike | None = None) -> Path:
    """The data directory: the explicit argument, else $CLAIMS_DATA_DIR, else a per-user cache folder."""
    if explicit is not None:
        return Path(explicit).expanduser()
    from_environment = os.environ.get("CLAIMS_DATA_DIR")
    if from_environment:
        return Path(from_environment).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home).expanduser() / "claims-harness" / "datasets"


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """Images with integer labels, as stored: uint8 [N, H, W] (grey) or [N, H, W, C] (colour, HWC).

    files: what was verified (a file relative to the data directory, or `folder:array`) -> its SHA-256.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    files: Mapping[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim not in (3, 4):
            raise ValueError(f"{self.name}: images must be uint8 [N,H,W] or [N,H,W,C], "
                             f"got {self.x.dtype} {self.x.shape}")
        if self.y.dtype != np.int64 or self.y.shape != (len(self.x),):
            raise ValueError(f"{self.name}: labels must be int64 [{len(self.x)}], got {self.y.dtype} {self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray) -> LabelledImages:
        return replace(self, x=self.x[indices], y=self.y[indices])

    def to_tensors(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   divide_by: float | None = 255.0, flatten: bool = False,
                   channels_first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) tensors on `device`: x as `dtype` divided by `divide_by`, y int64.

        Pixels are divided rather than multiplied by 1/255: that is what torchvision's ToTensor does,
        and x * (1/255) differs from x / 255 in the last float32 bit for 126 of the 256 byte values.
        divide_by=None keeps the raw byte values (as `dtype`).
        channels_first: [N, C, H, W], with C = 1 for grey images; else the stored layout.
        flatten: [N, features], in the order of the chosen layout (CHW flattening = the CIFAR rows).
        """
        x = torch.tensor(self.x).to(device)  # torch.tensor copies: the cached arrays are read-only
        if channels_first:
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
        x = x.to(dtype)
        if divide_by is not None:
            x = x.div_(divide_by)
        if flatten:
            x = x.reshape(len(x), -1)
        return x, torch.tensor(self.y).to(device)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _require_present(paths: Sequence[Path], what: str, key: str) -> None:
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise DatasetMissing(f"{what}: missing {', '.join(map(str, missing))}. {where_to_get(key)}", missing)


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files, gzip-compressed.

_IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def parse_idx(data: bytes, expected_magic: int, source: Path) -> np.ndarray:
    """Decode an uncompressed IDX file of unsigned bytes (big-endian header: magic, then one uint32 per dimension)."""
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected_magic:
        raise DatasetCorrupt(f"{source} is not an IDX file of the expected kind: "
                             f"magic {magic}, expected {expected_magic}", [source])
    n_dims = magic & 0xFF
    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise DatasetCorrupt(f"{source}: IDX header truncated", [source])
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", count=n_dims, offset=4))
    if len(data) != header_size + int(np.prod(shape)):
        raise DatasetCorrupt(f"{source}: IDX header says shape {shape} but holds {len(data) - header_size} bytes",
                             [source])
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


@functools.cache
def _read_idx_gz(identity: tuple[str, int, int], expected_magic: int) -> np.ndarray:
    source = Path(identity[0])
    with decoding(source, "gzip file"):
        data = gzip.decompress(source.read_bytes())
    return _read_only(parse_idx(data, expected_magic, source))


def _load_idx_pair(folder: str, data_dir: PathLike | None, split: str,
                   manifest: Mapping[str, Sequence[Checksum]]) -> LabelledImages:
    if split not in _IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_dir(data_dir)
    keys = [f"{folder}/{name}" for name in _IDX_FILES[split]]
    paths = [root / key for key in keys]
    _require_present(paths, f"{folder} {split} split", keys[0])
    files = {key: verify_file(path, accepted_checksums(manifest, key), where_to_get=where_to_get(key))
             for key, path in zip(keys, paths)}
    images = _read_idx_gz(file_identity(paths[0]), _IDX_IMAGES_MAGIC)
    labels = _read_idx_gz(file_identity(paths[1]), _IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetCorrupt(f"{paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels", paths)
    return LabelledImages(images, labels.astype(np.int64), folder, files)


def load_mnist(data_dir: PathLike | None = None, split: str = "train", *,
               manifest: Mapping[str, Sequence[Checksum]] = MANIFEST) -> LabelledImages:
    """MNIST from data_dir/mnist/*-ubyte.gz: x uint8 [N, 28, 28], y int64 (60000 train, 10000 test)."""
    return _load_idx_pair("mnist", data_dir, split, manifest)


def load_fashion_mnist(data_dir: PathLike | None = None, split: str = "train", *,
                       manifest: Mapping[str, Sequence[Checksum]] = MANIFEST) -> LabelledImages:
    """Fashion-MNIST from data_dir/fashion-mnist/*-ubyte.gz, same format as MNIST."""
    return _load_idx_pair("fashion-mnist", data_dir, split, manifest)


def load_digits() -> LabelledImages:
    """scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16: use divide_by=16).

    The data ship inside scikit-learn, so there is no file to verify and `files` is empty.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits  # here: importing scikit-learn takes a second

    bunch = sklearn_load_digits()
    images = bunch.images.astype(np.uint8)
    if not np.array_equal(images, bunch.images):
        raise ValueError("scikit-learn's digits are expected to hold integers 0..16")
    return LabelledImages(images, bunch.target.astype(np.int64), "digits", {},
                          tuple(str(name) for name in bunch.target_names))


# ---------------------------------------------------------------------------------------------
# CIFAR: official python pickles (inside the tarball or extracted), or the repacked CIFAR-10 npz.

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]


def _plain_dtype(code, align=False, copy=True) -> np.dtype:
    """numpy.dtype as a CIFAR pickle may call it: a plain number type, nothing with objects or fields."""
    if not isinstance(code, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise pickle.UnpicklingError(f"numpy.dtype{(code, align, copy)!r} is not a plain number type")
    dtype = np.dtype(code, align, copy)
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"numpy.dtype({code!r}) is not a plain number type")
    return dtype


class _CifarUnpickler(pickle._Unpickler):
    """Unpickles only what the official CIFAR pickles hold: dicts, lists, bytes and numpy arrays.

    Extracted pickles have no published digest and are verified only after decoding, so decoding
    must not be able to run arbitrary code, nor hand numpy a state it does not check: a dtype's
    state (its flags, say) is accepted only when it is the one numpy itself writes for that type,
    since a flipped flag makes numpy fail with SystemError and leaves it broken for later calls.
    The pure-Python unpickler is used because its BUILD step can be checked; the official pickles
    are a few large byte strings, so it is as fast here.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in protocol-2 pickles
    }
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        return self._ALLOWED[(module, name)]

    def load_build(self) -> None:
        state, target = self.stack[-1], self.stack[-2]
        if isinstance(target, np.dtype) and state != target.__reduce__()[2]:
            raise pickle.UnpicklingError(f"dtype state {state!r} is not the one numpy writes for {target}")
        if not isinstance(target, (np.dtype, np.ndarray)):
            raise pickle.UnpicklingError(f"BUILD on a {type(target).__name__} is not in a CIFAR pickle")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build

    def load(self):
        # A damaged opcode stream leaves the pure-Python machine's stack holding the wrong types, and
        # its opcodes then fail with whatever those types raise (AttributeError: a builtin has no
        # append): that is a malformed pickle too.
        try:
            return super().load()
        except (AttributeError, TypeError, LookupError) as error:
            raise pickle.UnpicklingError(f"malformed pickle ({type(error).__name__}: {error})") from error


def _cifar_corrupt(source: str, problem: str) -> DatasetCorrupt:
    """`source` is a file, or `archive!member` for a member read from a tarball."""
    return DatasetCorrupt(f"{source}: {problem}", [source.split("!", 1)[0]])


def _load_cifar_pickle(data: bytes, source: str) -> dict:
    with decoding(source, "official CIFAR pickle"):
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise _cifar_corrupt(source, f"holds a {type(batch).__name__}, not the official dict")
    return batch


def _cifar_images(batch: dict, source: str) -> np.ndarray:
    """Official rows (N x 3072: 1024 red, 1024 green, 1024 blue, each row-major 32x32) -> HWC uint8."""
    data = batch.get(b"data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _cifar_corrupt(source, "b'data' must be a uint8 array N x 3072")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _cifar_labels(batch: dict, key: bytes, n_images: int, source: str) -> np.ndarray:
    """Labels as uint8, the dtype the per-array digests were taken over."""
    with decoding(source, "official CIFAR pickle"):  # the unpickled labels may be anything at all
        labels = np.asarray(batch.get(key, []), dtype=np.int64)
    if labels.shape != (n_images,) or np.any(labels < 0) or np.any(labels > 255):
        raise _cifar_corrupt(source, f"{key!r} must list one class number (0..255) per image")
    return labels.astype(np.uint8)


def _cifar_split(batch: dict, label_key: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    images = _cifar_images(batch, source)
    return images, _cifar_labels(batch, label_key, len(images), source)


def _cifar10_from_batches(batches: Sequence[dict], sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    splits = [_cifar_split(batch, b"labels", source) for batch, source in zip(batches, sources)]
    return np.concatenate([x for x, _ in splits]), np.concatenate([y for _, y in splits])


def _read_tar_members(tarball: Path, names: Sequence[str]) -> dict[str, dict]:
    """Unpickle the named members in one sequential pass over the compressed stream (no extraction)."""
    raw: dict[str, bytes] = {}
    with decoding(tarball, "tar.gz archive"), tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if member.name in names and member.isfile():
                raw[member.name] = archive.extractfile(member).read()
    absent = [name for name in names if name not in raw]
    if absent:
        raise DatasetCorrupt(f"{tarball} lacks {', '.join(absent)}", [tarball])
    return {name: _load_cifar_pickle(data, f"{tarball}!{name}") for name, data in raw.items()}


def _with_digests(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, str]:
    x = _read_only(np.ascontiguousarray(x))
    y = _read_only(np.ascontiguousarray(y))
    return x, y, array_sha256(x), array_sha256(y)


# The repacked npz holds x_train (50000x32x32x3 bytes, 153.6 MB), x_test, y_train and y_test.
_CIFAR10_NPZ_LIMITS = ZipLimits(member_bytes=160 << 20, total_bytes=200 << 20)


@functools.cache
def _read_cifar10_npz(identity: tuple[str, int, int], split: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    source = Path(identity[0])
    with decoding(source, "repacked CIFAR-10 archive"):
        with zipfile.ZipFile(source) as archive:
            check_zip_members(source, archive.infolist(), _CIFAR10_NPZ_LIMITS)
        with np.load(source, allow_pickle=False) as arrays:
            return _with_digests(arrays[f"x_{split}"], arrays[f"y_{split}"])


@functools.cache
def _read_cifar10_tarball(identity: tuple[str, int, int], split: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    tarball = Path(identity[0])
    names = [f"cifar-10-batches-py/{batch}" for batch in _CIFAR10_BATCHES[split]]
    members = _read_tar_members(tarball, names)
    return _with_digests(*_cifar10_from_batches([members[name] for name in names],
                                                [f"{tarball}!{name}" for name in names]))


@functools.cache
def _read_cifar10_folder(identities: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray, str, str]:
    sources = [identity[0] for identity in identities]
    batches = []
    for source in sources:
        with decoding(source, "official CIFAR pickle"):
            data = Path(source).read_bytes()
        batches.append(_load_cifar_pickle(data, source))
    return _with_digests(*_cifar10_from_batches(batches, sources))


def load_cifar10(data_dir: PathLike | None = None, split: str = "train", *,
                 manifest: Mapping[str, Sequence[Checksum]] = MANIFEST) -> LabelledImages:
    """CIFAR-10: x uint8 [N, 32, 32, 3] (HWC, RGB), y int64, in the official order.

    Reads the first present of: cifar10/cifar10-repacked.npz, cifar10/cifar-10-python.tar.gz
    (verified by its MD5, read without extraction), cifar10/cifar-10-batches-py/ (the extracted
    official pickles). Whatever the source, the decoded arrays must match the per-array SHA-256
    digests (`cifar10:x_train` etc.); a present but mismatching source is an error, never a reason
    to try the next one.
    """
    if split not in _CIFAR10_BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_dir(data_dir) / "cifar10"
    npz, tarball, folder = root / "cifar10-repacked.npz", root / "cifar-10-python.tar.gz", root / "cifar-10-batches-py"
    files: dict[str, str] = {}
    if npz.is_file():
        source = npz
        x, y, x_digest, y_digest = _read_cifar10_npz(file_identity(npz), split)
    elif tarball.is_file():
        source = tarball
        key = "cifar10/cifar-10-python.tar.gz"
        files[key] = verify_file(tarball, accepted_checksums(manifest, key), where_to_get=where_to_get(key))
        x, y, x_digest, y_digest = _read_cifar10_tarball(file_identity(tarball), split)
    elif folder.is_dir():
        source = folder
        pickles = [folder / batch for batch in _CIFAR10_BATCHES[split]]
        _require_present(pickles, f"CIFAR-10 {split} split", "cifar10")
        x, y, x_digest, y_digest = _read_cifar10_folder(tuple(file_identity(path) for path in pickles))
    else:
        raise DatasetMissing(f"CIFAR-10: none of {npz}, {tarball}, {folder}/ exists. {where_to_get('cifar10')}",
                             [npz, tarball, folder])
    for name, array, digest in ((f"x_{split}", x, x_digest), (f"y_{split}", y, y_digest)):
        key = f"cifar10:{name}"
        files[key] = verify_array(array, accepted_checksums(manifest, key), what=f"CIFAR-10 {name}",
                                  source=source, where_to_get=where_to_get("cifar10"), digest=digest)
    return LabelledImages(x, y.astype(np.int64), "cifar10", files, CIFAR10_CLASS_NAMES)


@functools.cache
def _read_cifar100_tarball(identity: tuple[str, int, int], split: str, label: str):
    tarball = Path(identity[0])
    data_name, meta_name = f"cifar-100-python/{split}", "cifar-100-python/meta"
    members = _read_tar_members(tarball, [data_name, meta_name])
    x, y = _cifar_split(members[data_name], f"{label}_labels".encode(), f"{tarball}!{data_name}")
    names = members[meta_name].get(f"{label}_label_names".encode())
    if not isinstance(names, list) or len(names) <= y.max():
        raise _cifar_corrupt(f"{tarball}!{meta_name}", f"lacks the {label} label names")
    with decoding(f"{tarball}!{meta_name}", "official CIFAR pickle"):  # names must be UTF-8 bytes
        class_names = tuple(name.decode("utf-8") for name in names)
    return _read_only(np.ascontiguousarray(x)), _read_only(y.astype(np.int64)), class_names


def load_cifar100(data_dir: PathLike | None = None, split: str = "train", label: str = "fine", *,
                  manifest: Mapping[str, Sequence[Checksum]] = MANIFEST) -> LabelledImages:
    """CIFAR-100 from the official cifar100/cifar-100-python.tar.gz (verified by its MD5, read without extraction).

    x uint8 [N, 32, 32, 3] (HWC, RGB); y int64: the 100 fine or the 20 coarse labels.
    An extracted cifar-100-python/ folder is not accepted: no digest of its contents is known, so it
    could not be verified (CIFAR-10's extracted pickles can, by the per-array digests).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    key = "cifar100/cifar-100-python.tar.gz"
    tarball = resolve_data_dir(data_dir) / key
    if not tarball.is_file():
        raise DatasetMissing(f"CIFAR-100: {tarball} is missing (an extracted cifar-100-python/ folder cannot be "
                             f"verified and is not read). {where_to_get(key)}", [tarball])
    files = {key: verify_file(tarball, accepted_checksums(manifest, key), where_to_get=where_to_get(key))}
    x, y, class_names = _read_cifar100_tarball(file_identity(tarball), split, label)
    return LabelledImages(x, y, "cifar100", files, class_names)


# ---------------------------------------------------------------------------------------------
# Omniglot: zip archives of 105x105 1-bit PNGs, top/Alphabet/characterNN/NNNN_DD.png.

_OMNIGLOT_MEMBER = re.compile(r"^[^/]+/(?P<alphabet>[^/]+)/(?P<character>character\d+)/\d+_(?P<drawing>\d+)\.png$")
_OMNIGLOT_SIDE = 105


@dataclass(frozen=True, eq=False)
class OmniglotImages:
    """Omniglot drawings in archive order (archives as given, members sorted by name).

    images: uint8 [N, 105, 105]; the 1-bit PNGs converted as Pillow's convert("L") (and so
      torchvision's loader) does: 255 = white background, 0 = black stroke.
    characters: "Alphabet/characterNN" names; character_index / alphabet_index point into them.
    drawing_index: the DD of NNNN_DD.png, 1..20 (the drawing's number within its character).
    files: archive (relative to the data directory) -> its SHA-256.
    """

    images: np.ndarray
    alphabets: tuple[str, ...]
    characters: tuple[str, ...]
    alphabet_index: np.ndarray
    character_index: np.ndarray
    drawing_index: np.ndarray
    files: Mapping[str, str]

    def __len__(self) -> int:
        return len(self.images)

    def to_labelled(self) -> LabelledImages:
        """The drawings labelled by character (class = index into `characters`)."""
        return LabelledImages(self.images, self.character_index, "omniglot", self.files, self.characters)


def _check_member_name(archive: Path, name: str) -> None:
    """Reject names that would escape a folder if extracted (absolute, drive letters, '..')."""
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetCorrupt(f"{archive} holds an unsafe member name {name!r}", [archive])


def _decode_omniglot_png(data: bytes, archive: Path, name: str) -> np.ndarray:
    try:
        with decoding(f"{archive}!{name}", "PNG"), Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except Image.DecompressionBombError as error:  # Pillow's own refusal of a huge declared image
        raise DatasetCorrupt(f"{archive}!{name} is not a readable PNG: {error}", [archive]) from error
    if pixels.shape != (_OMNIGLOT_SIDE, _OMNIGLOT_SIDE):
        raise DatasetCorrupt(f"{archive}!{name}: image is {pixels.shape}, expected 105x105", [archive])
    return pixels


@functools.cache
def _read_omniglot_zip(identity: tuple[str, int, int]) -> tuple[np.ndarray, tuple[tuple[str, str, int], ...]]:
    archive_path = Path(identity[0])
    images, names = [], []
    with decoding(archive_path, "zip archive"), zipfile.ZipFile(archive_path) as archive:
        members = sorted(archive.infolist(), key=lambda info: info.filename)
        for info in members:
            _check_member_name(archive_path, info.filename)
        check_zip_members(archive_path, members, PNG_ARCHIVE_LIMITS)
        for info in members:
            if info.is_dir():
                continue
            match = _OMNIGLOT_MEMBER.match(info.filename)
            if match is None:
                raise DatasetCorrupt(f"{archive_path}: member {info.filename!r} is not "
                                     "top/Alphabet/characterNN/NNNN_DD.png", [archive_path])
            with decoding(f"{archive_path}!{info.filename}", "zip member"):
                data = archive.read(info)
            images.append(_decode_omniglot_png(data, archive_path, info.filename))
            names.append((match["alphabet"], match["character"], int(match["drawing"])))
    if not images:
        raise DatasetCorrupt(f"{archive_path} holds no drawings", [archive_path])
    return _read_only(np.stack(images)), tuple(names)


def load_omniglot(data_dir: PathLike | None = None, archives: Sequence[str] = ("images_background.zip",), *,
                  manifest: Mapping[str, Sequence[Checksum]] = MANIFEST) -> OmniglotImages:
    """Omniglot drawings from data_dir/omniglot/<archive>, read in memory (never extracted).

    Each archive is accepted by its official checksum or by the content digest of MANIFEST.md.
    Decoding ~20k PNGs takes a few seconds, so decoded archives are cached in-process.
    """
    root = resolve_data_dir(data_dir)
    keys = [f"omniglot/{archive}" for archive in archives]
    _require_present([root / key for key in keys], "Omniglot", keys[0])
    files, image_blocks, names = {}, [], []
    for key in keys:
        path = root / key
        files[key] = verify_file(path, accepted_checksums(manifest, key), where_to_get=where_to_get(key))
        archive_images, archive_names = _read_omniglot_zip(file_identity(path))
        image_blocks.append(archive_images)
        names.extend(archive_names)
    alphabets = tuple(dict.fromkeys(alphabet for alphabet, _, _ in names))
    characters = tuple(dict.fromkeys(f"{alphabet}/{character}" for alphabet, character, _ in names))
    alphabet_number = {alphabet: number for number, alphabet in enumerate(alphabets)}
    character_number = {character: number for number, character in enumerate(characters)}
    images = image_blocks[0] if len(image_blocks) == 1 else _read_only(np.concatenate(image_blocks))
    return OmniglotImages(
        images=images,
        alphabets=alphabets,
        characters=characters,
        alphabet_index=np.array([alphabet_number[alphabet] for alphabet, _, _ in names], dtype=np.int64),
        character_index=np.array([character_number[f"{alphabet}/{character}"] for alphabet, character, _ in names],
                                 dtype=np.int64),
        drawing_index=np.array([drawing for _, _, drawing in names], dtype=np.int64),
        files=files,
    )
