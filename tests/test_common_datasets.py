"""Loaders of implementations.common.datasets, on tiny files written in the real formats, and on the
real files where the data directory has them."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from implementations.common import checksums
from implementations.common.checksums import MANIFEST, Checksum, DatasetCorrupt, DatasetMissing, array_sha256
from implementations.common.datasets import (
    load_cifar10,
    load_cifar100,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_omniglot,
    resolve_data_dir,
)

# --------------------------------------------------------------------------------------------
# Writers of tiny files in the official formats.


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim  # unsigned bytes, ndim dimensions
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


IDX_NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def write_idx_dataset(root: Path, folder: str, rng: np.random.Generator) -> tuple[dict, dict]:
    """Tiny train/test IDX files; returns the arrays and a manifest accepting them by SHA-256."""
    arrays, manifest = {}, {}
    for split, n in (("train", 7), ("test", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for name, array in zip(IDX_NAMES[split], (images, labels)):
            write_idx_gz(root / folder / name, array)
            manifest[f"{folder}/{name}"] = (Checksum("sha256", sha256_of(root / folder / name)),)
    return arrays, manifest


@pytest.fixture
def mnist_dir(tmp_path):
    arrays, manifest = write_idx_dataset(tmp_path, "mnist", np.random.default_rng(0))
    return tmp_path, arrays, manifest


# --------------------------------------------------------------------------------------------
# Data directory and verification.


def test_resolve_data_dir_prefers_explicit_then_environment_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAIMS_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "from-env"
    monkeypatch.delenv("CLAIMS_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "claims-harness" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == Path.home() / ".cache" / "claims-harness" / "datasets"


def test_missing_and_corrupt_files_are_not_run_errors_naming_the_file(mnist_dir):
    root, _, manifest = mnist_dir
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetMissing, match=re.escape(str(root / "mnist" / "t10k-labels-idx1-ubyte.gz"))) as missing:
        load_mnist(root, "test", manifest=manifest)
    assert missing.value.not_run is True
    assert isinstance(missing.value, FileNotFoundError)

    wrong = "0" * 64
    manifest = {**manifest, "mnist/train-images-idx3-ubyte.gz": (Checksum("sha256", wrong),)}
    path = root / "mnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DatasetCorrupt) as corrupt:
        load_mnist(root, "train", manifest=manifest)
    message = str(corrupt.value)
    assert str(path) in message and wrong in message and sha256_of(path) in message
    assert corrupt.value.not_run is True and corrupt.value.paths == (path,)


def test_a_file_is_hashed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    opened = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    accepted = (Checksum("sha256", hashlib.sha256(b"abc").hexdigest()),)
    for _ in range(3):
        checksums.verify_file(path, accepted)
    assert opened.count(str(path.resolve())) == 1
    path.write_bytes(b"abcd")  # new size: a new identity, hashed again, and now rejected
    with pytest.raises(DatasetCorrupt):
        checksums.verify_file(path, accepted)
    assert opened.count(str(path.resolve())) == 2


def test_a_file_can_be_accepted_by_md5_and_its_sha256_is_recorded(tmp_path):
    arrays, manifest = write_idx_dataset(tmp_path, "fashion-mnist", np.random.default_rng(1))
    key = "fashion-mnist/train-images-idx3-ubyte.gz"
    manifest[key] = (Checksum("md5", hashlib.md5((tmp_path / key).read_bytes()).hexdigest()),)
    data = load_fashion_mnist(tmp_path, "train", manifest=manifest)
    np.testing.assert_array_equal(data.x, arrays["train"][0])
    assert data.files[key] == sha256_of(tmp_path / key)


def test_checksum_rejects_malformed_digests():
    with pytest.raises(ValueError):
        Checksum("sha256", "abc")
    with pytest.raises(ValueError):
        Checksum("sha1", "0" * 40)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST.


def test_load_mnist_parses_idx_files(mnist_dir):
    root, arrays, manifest = mnist_dir
    for split in ("train", "test"):
        data = load_mnist(root, split, manifest=manifest)
        np.testing.assert_array_equal(data.x, arrays[split][0])
        np.testing.assert_array_equal(data.y, arrays[split][1])
        assert data.x.dtype == np.uint8 and data.y.dtype == np.int64 and data.name == "mnist"
        assert data.files == {f"mnist/{name}": sha256_of(root / "mnist" / name) for name in IDX_NAMES[split]}
    assert not data.x.flags.writeable  # cached arrays are shared: protect them


def test_idx_with_wrong_magic_or_length_is_corrupt(mnist_dir):
    root, arrays, manifest = mnist_dir
    labels_path = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx_gz(labels_path, np.zeros((3, 1, 1), dtype=np.uint8))  # an images-style (3-d) header
    manifest = {**manifest, "mnist/t10k-labels-idx1-ubyte.gz": (Checksum("sha256", sha256_of(labels_path)),)}
    with pytest.raises(DatasetCorrupt, match="magic 2051, expected 2049"):
        load_mnist(root, "test", manifest=manifest)

    images_path = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images_path.read_bytes())
    images_path.write_bytes(gzip.compress(raw[:-5]))
    manifest["mnist/t10k-images-idx3-ubyte.gz"] = (Checksum("sha256", sha256_of(images_path)),)
    with pytest.raises(DatasetCorrupt, match="holds"):
        load_mnist(root, "test", manifest=manifest)


def test_to_tensors_layouts_and_scaling(mnist_dir):
    root, arrays, manifest = mnist_dir
    data = load_mnist(root, "test", manifest=manifest)
    x, y = data.to_tensors()
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = torch.tensor(arrays["test"][0]).float() / 255  # torchvision's ToTensor divides
    assert torch.equal(x[:, 0], expected)
    flat, _ = data.to_tensors(flatten=True)
    assert flat.shape == (3, 784) and torch.equal(flat, expected.reshape(3, -1))
    raw, _ = data.to_tensors(divide_by=None, channels_first=False)
    assert raw.shape == (3, 28, 28) and raw.max() > 1

    colour = data.subset(np.arange(2))
    colour = type(data)(np.stack([colour.x] * 3, axis=-1), colour.y, "colour")
    chw, _ = colour.to_tensors(divide_by=None)
    assert chw.shape == (2, 3, 28, 28) and torch.equal(chw[:, 1], torch.tensor(colour.x[..., 1]).float())


def test_load_digits_from_scikit_learn():
    digits = load_digits()
    assert digits.x.shape == (1797, 8, 8) and digits.x.max() == 16 and set(digits.y.tolist()) == set(range(10))


# --------------------------------------------------------------------------------------------
# CIFAR.


def official_rows(images_hwc: np.ndarray) -> np.ndarray:
    """HWC images -> the official N x 3072 rows (all red, then green, then blue; row-major)."""
    return images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072)


def cifar_pickle(batch: dict) -> bytes:
    return pickle.dumps(batch, protocol=2)


@pytest.fixture
def cifar10_arrays():
    rng = np.random.default_rng(2)
    return {"x_train": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
            "y_train": rng.integers(0, 10, 10, dtype=np.uint8),
            "x_test": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
            "y_test": rng.integers(0, 10, 2, dtype=np.uint8)}


def cifar10_members(arrays: dict) -> dict[str, bytes]:
    members = {}
    for number in range(5):
        part = slice(2 * number, 2 * number + 2)
        members[f"data_batch_{number + 1}"] = cifar_pickle({
            b"batch_label": b"training batch", b"data": official_rows(arrays["x_train"][part]),
            b"labels": arrays["y_train"][part].tolist(), b"filenames": [b"a.png", b"b.png"]})
    members["test_batch"] = cifar_pickle({b"batch_label": b"testing batch", b"data": official_rows(arrays["x_test"]),
                                          b"labels": arrays["y_test"].tolist(), b"filenames": [b"c.png", b"d.png"]})
    return members


def write_tar_gz(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def cifar10_manifest(arrays: dict) -> dict:
    return {f"cifar10:{name}": (Checksum("sha256", array_sha256(array)),) for name, array in arrays.items()}


@pytest.mark.parametrize("source", ["npz", "tarball", "folder"])
def test_load_cifar10_from_each_official_or_repacked_source(tmp_path, cifar10_arrays, source):
    manifest = cifar10_manifest(cifar10_arrays)
    root = tmp_path / "cifar10"
    root.mkdir()
    if source == "npz":
        np.savez_compressed(root / "cifar10-repacked.npz", **cifar10_arrays, label_names=np.array(["a"] * 10))
    elif source == "tarball":
        tarball = root / "cifar-10-python.tar.gz"
        write_tar_gz(tarball, {f"cifar-10-batches-py/{name}": data
                               for name, data in cifar10_members(cifar10_arrays).items()})
        manifest["cifar10/cifar-10-python.tar.gz"] = (Checksum("md5", hashlib.md5(tarball.read_bytes()).hexdigest()),)
    else:
        (root / "cifar-10-batches-py").mkdir()
        for name, data in cifar10_members(cifar10_arrays).items():
            (root / "cifar-10-batches-py" / name).write_bytes(data)
    for split in ("train", "test"):
        data = load_cifar10(tmp_path, split, manifest=manifest)
        np.testing.assert_array_equal(data.x, cifar10_arrays[f"x_{split}"])
        np.testing.assert_array_equal(data.y, cifar10_arrays[f"y_{split}"])
        assert data.y.dtype == np.int64 and data.class_names[0] == "airplane"
        assert data.files[f"cifar10:x_{split}"] == array_sha256(cifar10_arrays[f"x_{split}"])


def test_cifar10_arrays_not_matching_their_digest_are_corrupt(tmp_path, cifar10_arrays):
    manifest = cifar10_manifest(cifar10_arrays)
    changed = dict(cifar10_arrays, x_test=cifar10_arrays["x_test"] ^ 1)
    npz = tmp_path / "cifar10" / "cifar10-repacked.npz"
    npz.parent.mkdir()
    np.savez_compressed(npz, **changed)
    with pytest.raises(DatasetCorrupt, match=re.escape(str(npz))) as error:
        load_cifar10(tmp_path, "test", manifest=manifest)
    assert array_sha256(changed["x_test"]) in str(error.value)


def test_cifar_pickles_may_not_name_other_globals(tmp_path, cifar10_arrays):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(pickle.dumps(OrderedDict(data=1), protocol=2))
    with pytest.raises(DatasetCorrupt, match="collections.OrderedDict is not allowed"):
        load_cifar10(tmp_path, "test", manifest=cifar10_manifest(cifar10_arrays))


def test_missing_cifar_names_every_accepted_file(tmp_path):
    with pytest.raises(DatasetMissing) as error:
        load_cifar10(tmp_path, "train")
    for name in ("cifar10-repacked.npz", "cifar-10-python.tar.gz", "cifar-10-batches-py"):
        assert name in str(error.value)
    (tmp_path / "cifar100" / "cifar-100-python").mkdir(parents=True)  # extracted pickles are not accepted
    with pytest.raises(DatasetMissing, match=re.escape(str(tmp_path / "cifar100" / "cifar-100-python.tar.gz"))):
        load_cifar100(tmp_path, "train")


def test_load_cifar100_from_the_official_tarball(tmp_path):
    rng = np.random.default_rng(3)
    images = {"train": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
              "test": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)}
    fine = {"train": [0, 99, 5, 7], "test": [3, 1]}
    coarse = {"train": [0, 19, 2, 3], "test": [1, 0]}
    members = {f"cifar-100-python/{split}": cifar_pickle({
        b"filenames": [b"x.png"] * len(images[split]), b"batch_label": split.encode(),
        b"fine_labels": fine[split], b"coarse_labels": coarse[split], b"data": official_rows(images[split])})
        for split in ("train", "test")}
    members["cifar-100-python/meta"] = cifar_pickle({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                                     b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    tarball = tmp_path / "cifar100" / "cifar-100-python.tar.gz"
    write_tar_gz(tarball, members)
    manifest = {"cifar100/cifar-100-python.tar.gz": (Checksum("md5", hashlib.md5(tarball.read_bytes()).hexdigest()),)}
    train = load_cifar100(tmp_path, "train", manifest=manifest)
    np.testing.assert_array_equal(train.x, images["train"])
    assert train.y.tolist() == fine["train"] and train.class_names[99] == "f99"
    test = load_cifar100(tmp_path, "test", label="coarse", manifest=manifest)
    assert test.y.tolist() == coarse["test"] and len(test.class_names) == 20

    with pytest.raises(DatasetCorrupt, match="cifar-100-python.tar.gz"):
        load_cifar100(tmp_path, "train", manifest={"cifar100/cifar-100-python.tar.gz": (Checksum("md5", "0" * 32),)})


# --------------------------------------------------------------------------------------------
# Omniglot.


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(bool)).save(buffer, format="PNG")  # bool arrays become mode "1"
    return buffer.getvalue()


def omniglot_members(top: str, rng: np.random.Generator) -> dict[str, bytes]:
    members = {}
    for alphabet in ("Bravo", "Alpha"):
        for character in (1, 2):
            for drawing in (1, 2):
                pixels = rng.random((105, 105)) > 0.1
                name = f"{top}/{alphabet}/character{character:02d}/0{character:03d}_{drawing:02d}.png"
                members[name] = png_bytes(pixels)
    return members


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    folders = sorted({name.rsplit("/", n)[0] + "/" for name in members for n in (1, 2, 3)})
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for folder in folders:
            archive.writestr(folder, b"")
        for name, data in members.items():
            archive.writestr(name, data)


def content_digest(members: dict[str, bytes]) -> str:
    """The MANIFEST.md definition, written out independently of the loader."""
    hasher = hashlib.sha256()
    for name in sorted(members):
        hasher.update(name.encode() + b"\0" + members[name] + b"\0")
    return hasher.hexdigest()


def test_load_omniglot_decodes_pngs_in_memory(tmp_path):
    members = omniglot_members("images_background", np.random.default_rng(4))
    archive = tmp_path / "omniglot" / "images_background.zip"
    write_zip(archive, members)
    manifest = {"omniglot/images_background.zip": (Checksum("png-content-sha256", content_digest(members)),)}
    data = load_omniglot(tmp_path, manifest=manifest)
    assert data.images.shape == (8, 105, 105) and data.images.dtype == np.uint8
    assert set(np.unique(data.images)) == {0, 255}
    assert data.alphabets == ("Alpha", "Bravo")  # members in sorted name order
    assert data.characters == ("Alpha/character01", "Alpha/character02", "Bravo/character01", "Bravo/character02")
    assert data.character_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data.alphabet_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert data.drawing_index.tolist() == [1, 2] * 4
    first = np.asarray(Image.open(io.BytesIO(members["images_background/Alpha/character01/0001_01.png"])))
    np.testing.assert_array_equal(data.images[0], np.where(first, 255, 0))
    assert data.files == {"omniglot/images_background.zip": sha256_of(archive)}
    labelled = data.to_labelled()
    assert labelled.y.tolist() == data.character_index.tolist() and labelled.class_names == data.characters


def test_omniglot_content_digest_ignores_the_zip_layout(tmp_path):
    members = omniglot_members("images_evaluation", np.random.default_rng(5))
    deflated, stored = tmp_path / "deflated.zip", tmp_path / "stored.zip"
    write_zip(deflated, members)
    write_zip(stored, members, zipfile.ZIP_STORED)
    assert sha256_of(deflated) != sha256_of(stored)
    assert checksums.png_content_sha256(deflated) == checksums.png_content_sha256(stored) == content_digest(members)


@pytest.mark.parametrize("unsafe", ["../evil.png", "/abs/evil.png", "top/a/../../evil.png", "C:/evil.png"])
def test_omniglot_rejects_unsafe_member_names(tmp_path, unsafe):
    members = {**omniglot_members("images_background", np.random.default_rng(6)), unsafe: b"x"}
    archive = tmp_path / "omniglot" / "images_background.zip"
    path = archive.parent
    path.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as handle:
        for name, data in members.items():
            handle.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name exactly as given
    manifest = {"omniglot/images_background.zip": (Checksum("sha256", sha256_of(archive)),)}
    with pytest.raises(DatasetCorrupt, match=re.escape(f"unsafe member name {unsafe!r}")):
        load_omniglot(tmp_path, manifest=manifest)


def test_omniglot_drawings_must_be_105_by_105(tmp_path):
    members = {"images_background/Alpha/character01/0001_01.png": png_bytes(np.ones((104, 105)))}
    archive = tmp_path / "omniglot" / "images_background.zip"
    write_zip(archive, members)
    manifest = {"omniglot/images_background.zip": (Checksum("sha256", sha256_of(archive)),)}
    with pytest.raises(DatasetCorrupt, match=r"0001_01.png: image is \(104, 105\), expected 105x105"):
        load_omniglot(tmp_path, manifest=manifest)


def test_missing_omniglot_archive_is_named(tmp_path):
    with pytest.raises(DatasetMissing, match="images_evaluation.zip"):
        load_omniglot(tmp_path, ("images_evaluation.zip",))


# --------------------------------------------------------------------------------------------
# The real files, where the data directory has them.

REAL_DATA_DIR = Path(os.environ.get("CLAIMS_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


def real_file(relative: str) -> Path:
    path = REAL_DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


def test_manifest_digests_are_those_of_the_datasets_manifest():
    manifest_md = real_file("MANIFEST.md").read_text()
    for key, accepted in MANIFEST.items():
        if key.startswith("cifar100/"):
            continue  # CIFAR-100 is not in that manifest; its MD5 is the official published one
        for checksum in accepted:
            assert checksum.hexdigest in manifest_md, (key, checksum)


def test_real_mnist_loads_in_full():
    real_file("mnist/train-images-idx3-ubyte.gz")
    train, test = load_mnist(REAL_DATA_DIR, "train"), load_mnist(REAL_DATA_DIR, "test")
    assert train.x.shape == (60000, 28, 28) and test.x.shape == (10000, 28, 28)
    assert np.bincount(train.y).tolist()[:2] == [5923, 6742]


def test_real_omniglot_subset_matches_its_content_digest():
    path = real_file("omniglot/images_background_small1.zip")
    expected = [c.hexdigest for c in MANIFEST["omniglot/images_background_small1.zip"] if c.algorithm != "sha256"]
    assert checksums.png_content_sha256(path) in expected


def test_real_cifar10_test_split():
    real_file("cifar10/cifar10-repacked.npz")
    test = load_cifar10(REAL_DATA_DIR, "test")
    assert test.x.shape == (10000, 32, 32, 3) and np.bincount(test.y).tolist() == [1000] * 10
