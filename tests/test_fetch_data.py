"""`python -m verify fetch-data` and `pytest --fetch-data` against a real HTTP server on loopback.

The server (http.server in a thread, 127.0.0.1, port 0) serves tiny gzip'd IDX files in MNIST's
format under several mirror prefixes, each of which can corrupt a file, drop the connection
mid-file, ignore Range requests, or send too much. The registry is overridden per test; nothing
goes beyond loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_common_datasets import IDX_NAMES, write_idx_dataset
from test_hardening_cli import claim, ledger, project, pytest_session  # noqa: F401 (project is a fixture)

from implementations.common import checksums
from implementations.common.checksums import DATASETS, MANIFEST, DatasetSource, RemoteFile
from implementations.common.datasets import load_mnist
from verify import cli, fetch

NAMES = IDX_NAMES["train"] + IDX_NAMES["test"]


@dataclass
class Mirror:
    """How one URL prefix serves its files."""

    corrupt: bool = False  # flip a byte of every file
    drops: int = 0  # the next `drops` responses stop half-way through the body
    ranges: bool = True  # honour Range requests (206); else always answer 200 with the whole file
    extra: bytes = b""  # appended to every file (a server that sends more than the file has)


@dataclass
class Server:
    files: dict[str, bytes]
    mirrors: dict[str, Mirror] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base: str = ""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: Server = self.server.state
        state.requests.append((self.path, self.headers.get("Range")))
        prefix, _, name = self.path.strip("/").partition("/")
        mirror = state.mirrors.get(prefix)
        if mirror is None or name not in state.files:
            self.send_error(404)
            return
        body = state.files[name] + mirror.extra
        if mirror.corrupt:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(wanted[1]) if wanted and mirror.ranges else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if mirror.drops:  # HTTP/1.0: returning closes the connection, short of Content-Length
            mirror.drops -= 1
            payload = payload[:len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def published(tmp_path):
    """Tiny MNIST-format files as a server would publish them, and a manifest of their SHA-256s."""
    arrays, manifest = write_idx_dataset(tmp_path / "published", "mnist", np.random.default_rng(0))
    return tmp_path / "published" / "mnist", arrays, manifest


@pytest.fixture
def server(published):
    folder, _, _ = published
    state = Server({name: (folder / name).read_bytes() for name in NAMES})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = state
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def registry(server: Server, mirrors: list[str], *, sizes: bool = True, name: str = "mnist") -> dict:
    files = tuple(RemoteFile(f"{name}/{file}", tuple(f"{server.base}/{mirror}/{file}" for mirror in mirrors),
                             len(server.files[file]) if sizes else None, f"MNIST/raw/{file}")
                  for file in NAMES)
    return {name: DatasetSource(name, files, "the tiny test files")}


def run(server: Server, data_dir: Path, manifest: dict, mirrors: list[str], **options) -> tuple[list, str]:
    stream = io.StringIO()
    options.setdefault("registry", registry(server, mirrors))
    outcomes = fetch.fetch(["mnist"], data_dir, manifest=manifest, stream=stream, **options)
    return outcomes, stream.getvalue()


def assert_ready(data_dir: Path, published_folder: Path) -> None:
    for name in NAMES:
        assert (data_dir / "mnist" / name).read_bytes() == (published_folder / name).read_bytes()
    assert not list(data_dir.rglob("*.part"))


def test_fetch_downloads_verifies_and_the_loader_reads_the_files(tmp_path, published, server):
    folder, arrays, manifest = published
    server.mirrors["a"] = Mirror()
    data_dir = tmp_path / "data"
    outcomes, progress = run(server, data_dir, manifest, ["a"])
    assert all(outcome.ok for outcome in outcomes) and len(outcomes) == 4
    assert all("downloaded from" in outcome.message and "verified (sha256" in outcome.message for outcome in outcomes)
    assert_ready(data_dir, folder)
    assert f"mnist/{NAMES[0]}: downloading {server.base}/a/{NAMES[0]}" in progress and "(100%)" in progress
    test = load_mnist(data_dir, "test", manifest=manifest)
    assert np.array_equal(test.x, arrays["test"][0])
    # A second fetch finds every file in place and verified: no request at all.
    requests = len(server.requests)
    outcomes, _ = run(server, data_dir, manifest, ["a"])
    assert [outcome.message.split(",")[0] for outcome in outcomes] == ["present"] * 4
    assert len(server.requests) == requests


def test_a_corrupted_file_on_the_first_mirror_falls_over_to_the_second(tmp_path, published, server):
    folder, _, manifest = published
    server.mirrors.update(bad=Mirror(corrupt=True), big=Mirror(extra=b"x" * 100), good=Mirror())
    data_dir = tmp_path / "data"
    outcomes, _ = run(server, data_dir, manifest, ["missing", "bad", "big", "good"])
    assert all(outcome.ok for outcome in outcomes)
    message = outcomes[0].message
    assert f"downloaded from {server.base}/good/" in message
    assert_ready(data_dir, folder)
    # Each mirror was asked once per file: the 404, the corrupt copy (deleted), the oversized one (cut off).
    assert [path.split("/")[1] for path, _ in server.requests[:4]] == ["missing", "bad", "big", "good"]


def test_every_mirror_failing_keeps_nothing_and_says_why_per_url(tmp_path, published, server):
    _, _, manifest = published
    server.mirrors.update(bad=Mirror(corrupt=True), big=Mirror(extra=b"x"))
    data_dir = tmp_path / "data"
    outcomes, _ = run(server, data_dir, manifest, ["missing", "bad", "big"])
    assert not any(outcome.ok for outcome in outcomes)
    line = outcomes[0].line()
    assert "\n" not in line and line.startswith(f"mnist/{NAMES[0]}: not fetched: ")
    assert "/missing/" in line and "HTTP 404" in line
    assert "/bad/" in line and "matches no known checksum" in line and "deleted" in line
    assert "/big/" in line and "announces" in line
    assert not [path for path in data_dir.rglob("*") if path.is_file()]


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(tmp_path, published, server):
    folder, _, manifest = published
    server.mirrors["a"] = Mirror(drops=1)
    data_dir = tmp_path / "data"
    outcomes, progress = run(server, data_dir, manifest, ["a"])
    assert all(outcome.ok for outcome in outcomes)
    assert_ready(data_dir, folder)
    half = len(server.files[NAMES[0]]) // 2
    assert server.requests[:2] == [(f"/a/{NAMES[0]}", None), (f"/a/{NAMES[0]}", f"bytes={half}-")]
    assert f"connection closed after {half} of {len(server.files[NAMES[0]])} bytes; resuming at byte {half}" in progress


def test_a_part_left_by_an_earlier_run_is_resumed(tmp_path, published, server):
    folder, _, manifest = published
    server.mirrors["a"] = Mirror()
    data_dir = tmp_path / "data"
    part = data_dir / "mnist" / f"{NAMES[0]}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(server.files[NAMES[0]][:100])
    outcomes, _ = run(server, data_dir, manifest, ["a"])
    assert all(outcome.ok for outcome in outcomes)
    assert_ready(data_dir, folder)
    assert server.requests[0] == (f"/a/{NAMES[0]}", "bytes=100-")


def test_a_server_that_ignores_range_sends_the_whole_file_again(tmp_path, published, server):
    folder, _, manifest = published
    server.mirrors["a"] = Mirror(drops=1, ranges=False)
    data_dir = tmp_path / "data"
    outcomes, progress = run(server, data_dir, manifest, ["a"])
    assert all(outcome.ok for outcome in outcomes)
    assert_ready(data_dir, folder)
    half = len(server.files[NAMES[0]]) // 2
    assert server.requests[1] == (f"/a/{NAMES[0]}", f"bytes={half}-")
    assert "ignored the range request; downloading the whole file again" in progress


def test_a_file_with_no_known_checksum_is_never_kept_by_default(tmp_path, published, server):
    _, _, manifest = published
    server.mirrors["a"] = Mirror()
    data_dir = tmp_path / "data"
    unknown = {key: value for key, value in manifest.items() if not key.endswith(NAMES[0])}
    outcomes, _ = run(server, data_dir, unknown, ["a"])
    refused = outcomes[0]
    assert not refused.ok and "no checksum is known" in refused.message and "--trust-unverified" in refused.message
    assert not (data_dir / "mnist" / NAMES[0]).exists() and not list(data_dir.rglob("*.part"))
    assert all(path != f"/a/{NAMES[0]}" for path, _ in server.requests)  # not even downloaded
    assert all(outcome.ok for outcome in outcomes[1:])
    # Only at the user's word, and then said to be unverified, with its SHA-256.
    outcomes, _ = run(server, data_dir, unknown, ["a"], trust_unverified=True)
    digest = checksums.sha256_file(data_dir / "mnist" / NAMES[0])
    assert outcomes[0].ok and "NOT verified" in outcomes[0].message and digest in outcomes[0].message
    # Datasets with unknown checksums are not fetched unless named.
    assert "ag_news" not in [source.name for source in fetch.select([])]
    assert [source.name for source in fetch.select(["ag_news"])] == ["ag_news"]


def test_a_present_file_that_does_not_verify_is_left_alone_and_reported(tmp_path, published, server):
    _, _, manifest = published
    server.mirrors["a"] = Mirror()
    data_dir = tmp_path / "data"
    (data_dir / "mnist").mkdir(parents=True)
    (data_dir / "mnist" / NAMES[0]).write_bytes(b"mine")
    outcomes, _ = run(server, data_dir, manifest, ["a"])
    assert not outcomes[0].ok and "matches no known checksum; left as it is" in outcomes[0].message
    assert (data_dir / "mnist" / NAMES[0]).read_bytes() == b"mine"


@pytest.mark.parametrize("where", ["data dir", "separate root"])
def test_torchvision_layout_is_copied_in_when_it_verifies(tmp_path, published, server, where):
    folder, _, manifest = published
    server.mirrors["a"] = Mirror()
    data_dir = tmp_path / "data"
    root = data_dir if where == "data dir" else tmp_path / "torchvision"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in NAMES:
        shutil.copyfile(folder / name, root / "MNIST" / "raw" / name)
    (root / "MNIST" / "raw" / NAMES[1]).write_bytes(b"not the file")  # a bad copy is not used, nor touched
    outcomes, _ = run(server, data_dir, manifest, ["a"], torchvision_roots=[] if root == data_dir else [root])
    assert all(outcome.ok for outcome in outcomes)
    assert f"copied from {root / 'MNIST' / 'raw' / NAMES[0]} (torchvision layout)" in outcomes[0].message
    assert "downloaded from" in outcomes[1].message
    assert_ready(data_dir, folder)
    assert [path for path, _ in server.requests] == [f"/a/{NAMES[1]}"]
    assert (root / "MNIST" / "raw" / NAMES[1]).read_bytes() == b"not the file"


def test_cli_unknown_dataset_is_one_line_error(tmp_path, capsys):
    assert cli.main(["fetch-data", "mnist", "no-such-set", "--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: unknown dataset 'no-such-set'; known: mnist, fashion-mnist")
    assert not list(tmp_path.iterdir())


def test_cli_fetches_lists_and_fails_with_one_line_per_file(tmp_path, published, server, monkeypatch, capsys):
    folder, _, manifest = published
    server.mirrors.update(a=Mirror(), bad=Mirror(corrupt=True))
    monkeypatch.setattr(fetch, "MANIFEST", manifest)
    monkeypatch.setattr(fetch, "DATASETS", registry(server, ["bad"]))
    data_dir = tmp_path / "data"
    assert cli.main(["fetch-data", "--data-dir", str(data_dir)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4 and all(line.startswith("error: mnist/") and "not fetched" in line for line in errors)
    assert captured.out == f"0 of 4 files ready in {data_dir}\n"
    monkeypatch.setattr(fetch, "DATASETS", registry(server, ["bad", "a"]))
    assert cli.main(["fetch-data", "mnist", "--data-dir", str(data_dir)]) == 0
    captured = capsys.readouterr()
    assert "error" not in captured.err and captured.out.endswith(f"4 of 4 files ready in {data_dir}\n")
    assert_ready(data_dir, folder)
    assert cli.main(["fetch-data", "--list", "--data-dir", str(data_dir)]) == 0
    listing = capsys.readouterr().out
    assert f"  mnist/{NAMES[0]}  " in listing and "sha256  present" in listing
    assert f"{server.base}/a/{NAMES[0]}" in listing


def test_registry_matches_the_manifest_and_the_datasets_manifest():
    """Every verifiable dataset's files have MANIFEST checksums; sizes are MANIFEST.md's; the
    datasets the ledgers name are all registered."""
    for source in DATASETS.values():
        assert source.files and all(file.urls and all(url.startswith(("https://", "http://")) for url in file.urls)
                                    for file in source.files)
        for file in source.files:
            assert file.key.startswith(f"{source.name}/")
            assert all(alternative in MANIFEST for alternative in file.alternatives)
    assert [name for name, source in DATASETS.items() if not source.verifiable(MANIFEST)] == ["ag_news", "qwen2.5-1.5b"]
    assert {"mnist", "fashion-mnist", "omniglot", "cifar10", "cifar100"} <= set(DATASETS)
    named = {name for path in (Path(__file__).resolve().parents[1] / "claims").glob("*/claims.toml") for name in
             re.findall(r'"([^"]+)"', " ".join(re.findall(r"^datasets = \[(.*)\]", path.read_text(), re.M)))}
    assert named <= set(DATASETS), named - set(DATASETS)
    assert "python -m verify fetch-data omniglot" in checksums.where_to_get("omniglot/images_evaluation.zip")
    manifest_md = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "MANIFEST.md"
    if manifest_md.is_file():
        text = manifest_md.read_text()
        for source in DATASETS.values():
            for file in source.files:
                assert file.size is None or f"{file.size} bytes" in text or f"| {file.size} |" in text, file


TINY_PLUGIN = '''
import json, os
from implementations.common.checksums import Checksum, DatasetSource, RemoteFile
from verify import fetch

spec = json.loads(os.environ["FETCH_TEST_REGISTRY"])
fetch.DATASETS = {"tiny": DatasetSource("tiny", (RemoteFile("tiny/data.bin", (spec["url"],)),), "test")}
fetch.MANIFEST = {"tiny/data.bin": (Checksum("sha256", spec["sha256"]),)}
'''

TINY_PROTOCOL = '''
import pathlib
from implementations.common.checksums import DatasetMissing


def measure(*, seed, device, data_dir):
    path = pathlib.Path(data_dir) / "tiny" / "data.bin"
    if not path.is_file():
        raise DatasetMissing(f"missing {path}", [path])
    return {"x": 1.0}
'''


def test_pytest_fetch_data_fetches_what_the_selected_entries_name(project, server, monkeypatch):
    server.mirrors["a"] = Mirror()
    name = NAMES[3]
    monkeypatch.setenv("FETCH_TEST_REGISTRY", json.dumps({
        "url": f"{server.base}/a/{name}", "sha256": hashlib.sha256(server.files[name]).hexdigest()}))
    (project / "fetchpatch.py").write_text(TINY_PLUGIN)
    (project / "tinyproto.py").write_text(TINY_PROTOCOL)
    ledger(project, "toy", claim("toy", "tinyproto:measure") + 'datasets = ["tiny", "nowhere"]\n')
    done = pytest_session(project, "-p", "fetchpatch", "--fetch-data")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "fetch-data: no registered dataset 'nowhere'" in output
    assert f"fetch-data: tiny/data.bin: downloaded from {server.base}/a/{name}, verified" in output
    assert "1 passed" in output
    assert (project / "data" / "tiny" / "data.bin").read_bytes() == server.files[name]
