"""Known dataset files, their checksums, where they are published, and verification that hashes
each file once per process.

A run only ever uses data whose bytes match a published checksum (or a digest defined in the
datasets MANIFEST.md). A missing or mismatching file raises `DatasetMissing` / `DatasetCorrupt`,
whose `not_run = True` turns the claim into `not run`, naming the file: nothing is ever replaced
by substitute data. `DATASETS` registers each dataset's files with their official URLs and mirrors,
for `python -m verify fetch-data` (verify/fetch.py), which verifies downloads by the same MANIFEST.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import struct
import tarfile
import tokenize
import types
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetMissing(FileNotFoundError):
    """A dataset file the run needs is absent. The message names the file and where to get it."""

    not_run = True

    def __init__(self, message: str, paths: Sequence[str | Path] = ()):
        super().__init__(message)
        self.paths = tuple(Path(path) for path in paths)


class DatasetCorrupt(DatasetMissing):
    """A dataset file is present but is not a known file: wrong checksum or malformed content."""


# What decoding a present file raises when its bytes are not what they should be: the file system
# (OSError), the decompressors (zlib.error on a flipped byte, BadZipFile on a bad CRC, TarError,
# EOFError on a truncation), numpy's .npy header parser (tokenize.TokenError, SyntaxError,
# ValueError), struct unpacking, zipfile's refusal of a member whose flipped flag bits say it is
# encrypted (RuntimeError) or compressed by an unknown method (NotImplementedError, a RuntimeError),
# and the restricted CIFAR unpickler, whose allowed globals called with hostile arguments raise
# TypeError, LookupError (an unknown codec), MemoryError (a huge shape) or ArithmeticError. A bug
# elsewhere in a loader still surfaces as what it is.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, TypeError, LookupError, MemoryError, ArithmeticError, RuntimeError, zlib.error,
    zipfile.BadZipFile, tarfile.TarError, pickle.UnpicklingError, tokenize.TokenError, SyntaxError, struct.error,
)


def _describe(error: BaseException) -> str:
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = " ".join(str(error).split())  # one line, whatever the decoder put in its message
    return f"{name}: {text}" if text else name


@contextlib.contextmanager
def decoding(source: str | Path, what: str) -> Iterator[None]:
    """Turn any failure to decode a present file into DatasetCorrupt (so the claim is `not run`),
    naming the file and what failed. `source` is a file, or `archive!member` for a member."""
    try:
        yield
    except DatasetMissing:  # already names the file (DatasetCorrupt is one)
        raise
    except DECODE_ERRORS as error:
        raise DatasetCorrupt(f"{source} is not a readable {what}: {_describe(error)}",
                             [str(source).split("!", 1)[0]]) from error


@dataclass(frozen=True)
class ZipLimits:
    """What an archive's members may declare, checked before any member is inflated.

    member_bytes / total_bytes: largest uncompressed size of one member / of all of them.
    ratio: largest uncompressed-to-compressed ratio, for members of more than RATIO_FLOOR bytes
    (a bomb needs a large output; a small file of zeros legitimately compresses a thousandfold).
    Reading a member never yields more than its declared size (zipfile stops there and then fails
    the CRC), so these declared sizes bound the memory a member can take.
    """

    member_bytes: int
    total_bytes: int
    ratio: float = 100.0


RATIO_FLOOR = 1 << 20
# Omniglot drawings are 105x105 1-bit PNGs of at most ~520 bytes, ~20k per archive (~5 MB in all).
PNG_ARCHIVE_LIMITS = ZipLimits(member_bytes=64 << 10, total_bytes=64 << 20)


def check_zip_members(archive: Path, members: Sequence[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Raise DatasetCorrupt, without inflating anything, if a member declares more than `limits` allow."""
    total = 0
    for info in members:
        where = f"{archive}!{info.filename}"
        if info.file_size > limits.member_bytes:
            raise DatasetCorrupt(f"{where} declares {info.file_size} bytes uncompressed, more than the "
                                 f"{limits.member_bytes} a member of this archive may hold; not inflated", [archive])
        if info.file_size > RATIO_FLOOR and info.file_size > limits.ratio * max(info.compress_size, 1):
            raise DatasetCorrupt(f"{where} declares {info.file_size} bytes from {info.compress_size} compressed, "
                                 f"a ratio above {limits.ratio:g}; not inflated", [archive])
        total += info.file_size
    if total > limits.total_bytes:
        raise DatasetCorrupt(f"{archive} declares {total} bytes uncompressed in all, more than the "
                             f"{limits.total_bytes} this archive may hold; not inflated", [archive])


FILE_ALGORITHMS = ("sha256", "md5")
PNG_CONTENT_SHA256 = "png-content-sha256"
_HEX_LENGTH = {"sha256": 64, "md5": 32, PNG_CONTENT_SHA256: 64}


@dataclass(frozen=True)
class Checksum:
    """One accepted digest of a file (or of an array, for keys of the form `folder:array`).

    algorithm: "sha256" or "md5" of the file's bytes (of the raw C-order bytes for an array), or
    "png-content-sha256" for zip archives (see `png_content_sha256`).
    origin: which file the digest identifies, shown in mismatch messages.
    """

    algorithm: str
    hexdigest: str
    origin: str = ""

    def __post_init__(self) -> None:
        if self.algorithm not in _HEX_LENGTH:
            raise ValueError(f"unknown checksum algorithm {self.algorithm!r}; known: {sorted(_HEX_LENGTH)}")
        digest = self.hexdigest
        if len(digest) != _HEX_LENGTH[self.algorithm] or digest != digest.lower() or not _is_hex(digest):
            raise ValueError(f"{self.algorithm} digest must be {_HEX_LENGTH[self.algorithm]} lowercase hex digits, "
                             f"got {digest!r}")

    def describe(self) -> str:
        origin = f" ({self.origin})" if self.origin else ""
        return f"{self.algorithm} {self.hexdigest}{origin}"


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text)


def _sha256(digest: str, origin: str) -> Checksum:
    return Checksum("sha256", digest, origin)


def _md5(digest: str, origin: str) -> Checksum:
    return Checksum("md5", digest, origin)


def _content(digest: str, origin: str) -> Checksum:
    return Checksum(PNG_CONTENT_SHA256, digest, origin)


# Keys are paths relative to the data directory, except `cifar10:<array>`: the CIFAR-10 arrays are
# verified by the SHA-256 of their raw C-order bytes (HWC uint8 images, uint8 labels), which is the
# same whether they come from the repacked npz, the official tarball or the extracted pickles.
# Digests copied from shared/datasets/MANIFEST.md and the official distributions' published MD5s.
MANIFEST: Mapping[str, tuple[Checksum, ...]] = types.MappingProxyType({
    "mnist/train-images-idx3-ubyte.gz": (
        _sha256("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", "official"),),
    "mnist/train-labels-idx1-ubyte.gz": (
        _sha256("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", "official"),),
    "mnist/t10k-images-idx3-ubyte.gz": (
        _sha256("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", "official"),),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        _sha256("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", "official"),),
    # Only the official MD5 is published for this file; no verified copy was at hand to take a SHA-256 from.
    "fashion-mnist/train-images-idx3-ubyte.gz": (
        _md5("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "official"),),
    "fashion-mnist/train-labels-idx1-ubyte.gz": (
        _sha256("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", "official"),),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": (
        _sha256("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", "official"),),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": (
        _sha256("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", "official"),),
    "omniglot/images_background.zip": (
        _md5("68d2efa1b9178cc56df9314c21c6e718", "official archive"),
        _sha256("7a4cae547f16207901bd3acaabd866c1dbbef4d559dff26d797dbc6423a64a1e", "repacked archive"),
        _content("73ee0a203c8e2fbf0c796f262b22d1a0cfbe7058b137a251ef26b08022e96160", "official drawings")),
    "omniglot/images_evaluation.zip": (
        _md5("6b91aef0f799c5bb55b94e3f2daec811", "official archive"),
        _sha256("d84af890b3ea334eca90f1cb04c6111603a1b620d66b82f86414b8707fbd0e8d", "repacked archive"),
        _content("a7ded7c69ffa7faf1eca9ea05ed7e0dac2109b2a61d534ea5db29fe38b94690a", "official drawings")),
    "omniglot/images_background_small1.zip": (
        _sha256("f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4", "official archive"),
        _content("92171fae0c1a87bdc871f6a5b89ae7bdd8a609b7f4e662bf9036dac1ad4dd840", "official drawings")),
    "omniglot/images_background_small2.zip": (
        _sha256("3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f", "official archive"),
        _content("45867902862910378724f27e95d76dd28fc10731a7067cb04c61fe8f84e6977f", "official drawings")),
    "cifar10/cifar-10-python.tar.gz": (
        _md5("c58f30108f718f92721af3b95e74349a", "official"),),
    "cifar10:x_train": (
        _sha256("47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a", "official images"),),
    "cifar10:y_train": (
        _sha256("2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253", "official labels"),),
    "cifar10:x_test": (
        _sha256("f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04", "official images"),),
    "cifar10:y_test": (
        _sha256("cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5", "official labels"),),
    # The file itself, so that fetch-data can tell it stands for the tarball without decoding it.
    "cifar10/cifar10-repacked.npz": (
        _sha256("f99f686590cd9363ccd6262c59f1e2f36efc314f4bbef2cb611b24bd15173c6f", "repacked arrays"),),
    "cifar100/cifar-100-python.tar.gz": (
        _md5("eb9058c3a382ffc7106e4002c42a8d85", "official"),),
})

# ---------------------------------------------------------------------------------------------
# Where each dataset's files come from: the registry `python -m verify fetch-data` downloads from.
# Checksums are never here: a file is verified by its MANIFEST entry (same key), and a file with no
# MANIFEST entry has no known checksum. Sizes are those MANIFEST.md gives for the official files.

@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset, as published.

    key: its path relative to the data directory, which is also its MANIFEST key.
    urls: tried in this order; the official one first, except MNIST's, where torchvision's S3 mirror
      comes before yann.lecun.com, which has at times refused downloads.
    size: bytes of the official file where published (None: not known here); a download that
      grows past it is cut off.
    torchvision: its path below a torchvision dataset root (`root=` of torchvision.datasets),
      where torchvision keeps the same file (None: torchvision has no such file).
    alternatives: keys of files that, present and verified, make this one unnecessary (the
      repacked CIFAR-10 arrays stand for the official tarball).
    """

    key: str
    urls: tuple[str, ...]
    size: int | None = None
    torchvision: str | None = None
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSource:
    """A dataset's folder in the data directory (`name`), its files and, for error messages, what
    to put there by hand (`by_hand`)."""

    name: str
    files: tuple[RemoteFile, ...]
    by_hand: str

    def verifiable(self, manifest: Mapping[str, Sequence[Checksum]]) -> bool:
        """Every file has a known checksum (only such datasets are fetched when none is named)."""
        return all(manifest.get(file.key) for file in self.files)


def _published(folder: str, sizes: Mapping[str, int | None], bases: Sequence[str],
               torchvision: str | None = None, alternatives: Sequence[str] = ()) -> tuple[RemoteFile, ...]:
    """Files `folder/<name>` published as `<base><name>` under each base URL."""
    return tuple(RemoteFile(f"{folder}/{name}", tuple(base + name for base in bases), size,
                            None if torchvision is None else f"{torchvision}{name}", tuple(alternatives))
                 for name, size in sizes.items())


_KRIZ = ("https://www.cs.toronto.edu/~kriz/",)
_QWEN_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "vocab.json", "merges.txt")

DATASETS: Mapping[str, DatasetSource] = types.MappingProxyType({source.name: source for source in (
    DatasetSource("mnist", _published(
        "mnist",
        {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
         "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542},
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"), "MNIST/raw/"),
        "the official MNIST files from http://yann.lecun.com/exdb/mnist/"),
    DatasetSource("fashion-mnist", _published(
        "fashion-mnist",
        {"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
         "t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148},
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), "FashionMNIST/raw/"),
        "the official Fashion-MNIST files from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    DatasetSource("omniglot", _published(
        "omniglot",
        {"images_background.zip": 9464212, "images_evaluation.zip": 6462886,
         "images_background_small1.zip": 1319022, "images_background_small2.zip": 1580917},
        ("https://raw.githubusercontent.com/brendenlake/omniglot/master/python/",
         "https://github.com/brendenlake/omniglot/raw/master/python/"), "omniglot-py/"),
        "the official Omniglot archives from https://github.com/brendenlake/omniglot (python/ folder)"),
    DatasetSource("cifar10", _published(
        "cifar10", {"cifar-10-python.tar.gz": 170498071}, _KRIZ, "", ("cifar10/cifar10-repacked.npz",)),
        "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"),
    DatasetSource("cifar100", _published("cifar100", {"cifar-100-python.tar.gz": None}, _KRIZ, ""),
                  "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"),
    # No checksum of these is known here: fetched only when named, and kept only with --trust-unverified.
    DatasetSource("ag_news", _published(
        "ag_news", {"train.csv": None, "test.csv": None},
        ("https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/",)),
        "train.csv and test.csv from https://github.com/mhjabreel/CharCnn_Keras (data/ag_news_csv/)"),
    DatasetSource("qwen2.5-1.5b", _published(
        "qwen2.5-1.5b", dict.fromkeys(_QWEN_FILES), ("https://huggingface.co/Qwen/Qwen2.5-1.5B/resolve/main/",)),
        "the Qwen/Qwen2.5-1.5B weights and tokenizer files from https://huggingface.co/Qwen/Qwen2.5-1.5B"),
)})


def where_to_get(key: str) -> str:
    """How to obtain the file behind a manifest key (or a dataset name), for error messages."""
    folder = key.split("/", 1)[0].split(":", 1)[0]
    return (f"Fetch it with `python -m verify fetch-data {folder}`, or put {DATASETS[folder].by_hand} into the "
            f"data directory's {folder}/ folder "
            "(data directory: --data-dir, else $CLAIMS_DATA_DIR, else ~/.cache/claims-harness/datasets).")


def accepted_checksums(manifest: Mapping[str, Sequence[Checksum]], key: str) -> tuple[Checksum, ...]:
    if key not in manifest:
        raise KeyError(f"the manifest has no checksum for {key!r}; add one to accept that file")
    return tuple(manifest[key])


# (resolved path, size, mtime_ns, algorithm) -> hexdigest. A file is hashed once per process
# unless it changes; the loaders' array caches are keyed by the same file identity.
_DIGEST_CACHE: dict[tuple[str, int, int, str], str] = {}


def file_identity(path: str | Path) -> tuple[str, int, int]:
    """(resolved path, size, mtime in ns): the key under which a file's digests and contents are cached."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    return str(resolved), status.st_size, status.st_mtime_ns


def forget_digests(path: str | Path) -> None:
    """Drop the cached digests of whatever was at `path`: a file rewritten in place (a download's
    `.part`) can keep its size and, on a coarse-clock file system, its mtime."""
    resolved = str(Path(path).resolve())
    for key in [key for key in _DIGEST_CACHE if key[0] == resolved]:
        del _DIGEST_CACHE[key]


def file_digests(path: str | Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Digests of a file's bytes for each algorithm in FILE_ALGORITHMS, reading the file at most once."""
    identity = file_identity(path)
    to_compute = [name for name in algorithms if identity + (name,) not in _DIGEST_CACHE]
    if to_compute:
        hashers = {name: hashlib.new(name) for name in to_compute}
        with open(identity[0], "rb") as stream:
            while chunk := stream.read(1 << 20):
                for hasher in hashers.values():
                    hasher.update(chunk)
        for name, hasher in hashers.items():
            _DIGEST_CACHE[identity + (name,)] = hasher.hexdigest()
    return {name: _DIGEST_CACHE[identity + (name,)] for name in algorithms}


def sha256_file(path: str | Path) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def png_content_sha256(path: str | Path) -> str:
    """Content digest of a zip archive, as defined in the datasets MANIFEST.md.

    SHA-256 over the archive's PNG members in sorted member-name order; for each member: the name
    (UTF-8), a NUL byte, the raw uncompressed bytes, a NUL byte. It ignores folder entries,
    timestamps and compression, so a faithful repack of the official drawings has the same digest.
    """
    identity = file_identity(path)
    key = identity + (PNG_CONTENT_SHA256,)
    if key not in _DIGEST_CACHE:
        hasher = hashlib.sha256()
        with decoding(identity[0], "zip archive"), zipfile.ZipFile(identity[0]) as archive:
            members = sorted((info for info in archive.infolist() if not info.is_dir() and info.filename.endswith(".png")),
                             key=lambda info: info.filename)
            check_zip_members(Path(identity[0]), members, PNG_ARCHIVE_LIMITS)
            for info in members:
                with decoding(f"{identity[0]}!{info.filename}", "zip member"):
                    data = archive.read(info)
                hasher.update(info.filename.encode("utf-8") + b"\0" + data + b"\0")
        _DIGEST_CACHE[key] = hasher.hexdigest()
    return _DIGEST_CACHE[key]


def verify_file(path: str | Path, accepted: Sequence[Checksum], *, where_to_get: str = "") -> str:
    """Check a file against the accepted checksums (any one matching is enough); return its SHA-256.

    The returned SHA-256 is recorded as the run's provenance even where the file was accepted by
    its MD5 or content digest. Raises DatasetMissing if the file is absent, DatasetCorrupt if no
    accepted checksum matches.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetMissing(f"dataset file {path} is missing. {where_to_get}".strip(), [path])
    if not accepted:
        raise ValueError(f"no accepted checksum given for {path}")
    algorithms = sorted({"sha256"} | {c.algorithm for c in accepted if c.algorithm in FILE_ALGORITHMS})
    actual = file_digests(path, algorithms)
    if any(actual.get(c.algorithm) == c.hexdigest for c in accepted):
        return actual["sha256"]
    if any(c.algorithm == PNG_CONTENT_SHA256 for c in accepted):
        actual[PNG_CONTENT_SHA256] = png_content_sha256(path)
        if any(actual[c.algorithm] == c.hexdigest for c in accepted if c.algorithm == PNG_CONTENT_SHA256):
            return actual["sha256"]
    expected = "; ".join(c.describe() for c in accepted)
    found = ", ".join(f"{name} {digest}" for name, digest in actual.items())
    raise DatasetCorrupt(f"dataset file {path} matches no known checksum: expected {expected}; "
                         f"actual {found}. {where_to_get}".strip(), [path])


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's raw C-order bytes (dtype and shape are checked separately)."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def verify_array(array: np.ndarray, accepted: Sequence[Checksum], *, what: str, source: Path, where_to_get: str = "",
                 digest: str | None = None) -> str:
    """Check an array's raw-bytes SHA-256 against the accepted ones; return it.

    `digest` may pass an already computed `array_sha256(array)` (the loaders cache it with the array).
    """
    actual = array_sha256(array) if digest is None else digest
    if any(c.algorithm == "sha256" and c.hexdigest == actual for c in accepted):
        return actual
    expected = "; ".join(c.describe() for c in accepted)
    raise DatasetCorrupt(f"{what} read from {source} matches no known checksum: expected {expected}; "
                         f"actual sha256 {actual} (shape {array.shape}, dtype {array.dtype}). {where_to_get}".strip(),
                         [source])
