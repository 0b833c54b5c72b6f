"""Fetch the registered dataset files into the data directory, each verified before it is kept.

``python -m verify fetch-data [NAME ...]`` and ``pytest claims/ --fetch-data`` both call `fetch`.
The registry (`DATASETS`: files, official URLs and mirrors, sizes) and the checksums (`MANIFEST`)
are those of implementations/common/checksums.py, which the loaders verify against as well.
Standard library only (urllib).

For each file, the first of these that applies:

1. It is in place and matches a known checksum: kept. (In place but matching none: an error; the
   file is left alone, never overwritten.)
2. A file that stands for it is in place and verified (the repacked CIFAR-10 arrays stand for the
   official tarball): nothing to do.
3. torchvision keeps the same file under a torchvision root (the data directory itself, or a
   `torchvision_roots` folder), e.g. ``MNIST/raw/train-images-idx3-ubyte.gz``, and that copy
   verifies: it is copied into our layout (the loaders read only our layout).
4. Downloaded from each URL in turn into ``<file>.part``; a ``.part`` left by an earlier attempt is
   resumed with an HTTP Range request (a server that answers 206 sends the rest; one that answers
   200 sends the whole file, which then replaces the part). A transfer cut mid-file is resumed the
   same way. The finished file is verified and renamed into place; one that fails its checksum is
   deleted and the next URL tried.

A file with no known checksum (AG News, the Qwen weights) could not be verified, so by default it is
never downloaded, let alone kept; ``trust_unverified`` downloads and keeps it, and the outcome prints
its SHA-256 so that it can be recorded. Nothing later checks such a file.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from implementations.common.checksums import (
    DATASETS,
    MANIFEST,
    Checksum,
    DatasetCorrupt,
    DatasetSource,
    RemoteFile,
    forget_digests,
    sha256_file,
    verify_file,
)

USER_AGENT = "cl-claims-harness-fetch/1 (python urllib)"
CHUNK = 1 << 16
RESUMES = 5  # resumed requests per URL; each follows a transfer that was cut after making progress
TTY_INTERVAL = 0.25  # seconds between redraws of the progress line on a terminal
LINE_INTERVAL = 10.0  # seconds between progress lines when stderr is not a terminal
TIMEOUT = 60.0  # seconds a connection may stay silent


@dataclass(frozen=True)
class Outcome:
    """What became of one file: `ok` (it is ready, or kept at the user's word) and a one-line message."""

    key: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{self.key}: {self.message}"


class _Failed(Exception):
    """One URL gave no usable file; the message (one line) says why."""


def select(names: Sequence[str], registry: Mapping[str, DatasetSource] | None = None,
           manifest: Mapping[str, Sequence[Checksum]] | None = None) -> list[DatasetSource]:
    """The named datasets (each once); no names: every dataset whose files all have a known checksum."""
    registry = DATASETS if registry is None else registry
    manifest = MANIFEST if manifest is None else manifest
    if not names:
        return [source for source in registry.values() if source.verifiable(manifest)]
    for name in names:
        if name not in registry:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(registry)}")
    return [registry[name] for name in dict.fromkeys(names)]


def missing_files(names: Iterable[str], data_dir: str | os.PathLike,
                  registry: Mapping[str, DatasetSource] | None = None) -> list[str]:
    """Keys of the named datasets' files absent from data_dir (a file counts as present when it, or
    one of the files that stand for it, exists). Presence only: the loaders verify checksums when they
    read. Unknown names are left to the ledger's validation."""
    registry = DATASETS if registry is None else registry
    root = Path(data_dir)
    return [file.key for name in dict.fromkeys(names) if name in registry for file in registry[name].files
            if not any((root / key).exists() for key in (file.key, *file.alternatives))]


def fetch(names: Sequence[str], data_dir: str | os.PathLike, *, trust_unverified: bool = False,
          torchvision_roots: Iterable[str | os.PathLike] = (), stream: TextIO | None = None,
          registry: Mapping[str, DatasetSource] | None = None,
          manifest: Mapping[str, Sequence[Checksum]] | None = None, timeout: float = TIMEOUT) -> list[Outcome]:
    """Fetch the files of the named datasets (see `select`) into data_dir; one Outcome per file.

    torchvision_roots: folders searched for torchvision's layout besides data_dir itself.
    stream: where progress goes (default sys.stderr). Unknown names raise ValueError before anything
    is fetched; a file that cannot be fetched is an Outcome with ok False, never an exception.
    """
    manifest = MANIFEST if manifest is None else manifest
    sources = select(names, registry, manifest)
    data_dir = Path(data_dir)
    roots = list(dict.fromkeys([data_dir, *map(Path, torchvision_roots)]))
    stream = sys.stderr if stream is None else stream
    return [_fetch_file(file, data_dir, tuple(manifest.get(file.key, ())), manifest, trust_unverified=trust_unverified,
                        roots=roots, stream=stream, timeout=timeout)
            for source in sources for file in source.files]


def _verified(path: Path, accepted: Sequence[Checksum]) -> str | None:
    """The file's SHA-256 if it matches an accepted checksum, else None (hashed afresh: it may be new)."""
    if not accepted or not path.is_file():
        return None
    forget_digests(path)
    try:
        return verify_file(path, accepted)
    except DatasetCorrupt:  # no checksum matches, or an archive too broken for its content digest
        return None


def _fetch_file(file: RemoteFile, data_dir: Path, accepted: tuple[Checksum, ...],
                manifest: Mapping[str, Sequence[Checksum]], *, trust_unverified: bool, roots: Sequence[Path],
                stream: TextIO, timeout: float) -> Outcome:
    target = data_dir / file.key
    part = target.with_name(target.name + ".part")
    if not accepted:
        if target.is_file():
            return Outcome(file.key, True, "present (no checksum is known for it: not verified)")
        if not trust_unverified:
            return Outcome(file.key, False, "not fetched: no checksum is known for it, so a download could not be "
                                            "verified (--trust-unverified downloads and keeps it unverified)")
    else:
        if target.is_file():
            digest = _verified(target, accepted)
            if digest:
                return Outcome(file.key, True, f"present, verified (sha256 {digest})")
            return Outcome(file.key, False, f"present but matches no known checksum; left as it is (remove {target} "
                                            "to fetch a fresh copy)")
        for alternative in file.alternatives:
            if _verified(data_dir / alternative, manifest.get(alternative, ())):
                return Outcome(file.key, True, f"not needed: {alternative} is present and verified")
        copied = _from_torchvision(file, accepted, roots, part, target)
        if copied is not None:
            return copied
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = _verified(part, accepted)  # a finished download that was never renamed
    if digest:
        os.replace(part, target)
        return Outcome(file.key, True, f"completed from {part.name}, verified (sha256 {digest})")
    failures = []
    for url in file.urls:
        try:
            _download(url, part, file, stream, timeout)
        except _Failed as error:
            failures.append(f"{url}: {error}")
            if not accepted:  # with no checksum to catch a mix, never join two servers' bytes
                part.unlink(missing_ok=True)
            continue
        if not accepted:
            forget_digests(part)
            digest = sha256_file(part)
            os.replace(part, target)
            return Outcome(file.key, True, f"downloaded from {url}, NOT verified (no known checksum; "
                                           f"kept by --trust-unverified), sha256 {digest}")
        digest = _verified(part, accepted)
        if digest:
            os.replace(part, target)
            return Outcome(file.key, True, f"downloaded from {url}, verified (sha256 {digest})")
        failures.append(f"{url}: matches no known checksum (sha256 {sha256_file(part)}); deleted")
        part.unlink()
    return Outcome(file.key, False, "not fetched: " + "; ".join(failures))


def _from_torchvision(file: RemoteFile, accepted: Sequence[Checksum], roots: Sequence[Path], part: Path,
                      target: Path) -> Outcome | None:
    """Copy a verified copy from torchvision's layout into place (copied, not linked: our file stays
    ours whatever happens to torchvision's)."""
    if file.torchvision is None:
        return None
    for root in roots:
        source = root / file.torchvision
        if not _verified(source, accepted):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, part)
        digest = _verified(part, accepted)
        if digest:  # the copy is checked too: the source may change while it is read
            os.replace(part, target)
            return Outcome(file.key, True, f"copied from {source} (torchvision layout), verified (sha256 {digest})")
        part.unlink()
    return None


def _reason(error: BaseException) -> str:
    """One line for a transport error."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _body_range(response: http.client.HTTPResponse, offset: int, limit: int | None) -> tuple[int, int | None]:
    """Where the response body starts in the file and the file's total size (None: not said)."""
    length = response.headers.get("Content-Length", "")
    if response.status == 206 and offset:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            raise _Failed(f"answered the request for bytes {offset}- with Content-Range "
                          f"{response.headers.get('Content-Range')!r}")
        return offset, int(match[3]) if match[3].isdigit() else (offset + int(length) if length.isdigit() else None)
    if response.status != 200:
        raise _Failed(f"unexpected HTTP status {response.status}")
    total = int(length) if length.isdigit() else None
    if total is not None and limit is not None and total > limit:
        raise _Failed(f"announces {total} bytes, more than the {limit} the file has")
    return 0, total


def _download(url: str, part: Path, file: RemoteFile, stream: TextIO, timeout: float) -> None:
    """Fill `part` with the file at `url`, resuming from what `part` holds; raise _Failed if it cannot."""
    resumes = 0
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 416 and offset:  # what the part holds is no prefix of this file: start again
                part.unlink()
                continue
            raise _Failed(f"HTTP {error.code} {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            raise _Failed(_reason(error)) from None
        with response:
            start, total = _body_range(response, offset, file.size)
            if offset and not start:
                stream.write(f"{file.key}: {url} ignored the range request; downloading the whole file again\n")
            elif not offset:
                stream.write(f"{file.key}: downloading {url}\n")
            received, cut = _receive(response, part, start, total, file, stream)
        if cut is None and (total is None or received >= total):
            return
        cut = cut or f"connection closed after {received} of {total} bytes"
        if received <= offset or resumes >= RESUMES:
            raise _Failed(cut)
        resumes += 1
        stream.write(f"{file.key}: {cut}; resuming at byte {received}\n")


def _receive(response: http.client.HTTPResponse, part: Path, start: int, total: int | None, file: RemoteFile,
             stream: TextIO) -> tuple[int, str | None]:
    """Write the body into `part` from byte `start` (0: the part is rewritten); return the bytes the
    part then holds and why the transfer was cut (None: it ended normally)."""
    progress = _Progress(stream, file.key, total)
    received, cut = start, None
    with open(part, "ab" if start else "wb") as out:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as error:  # reset, timeout, IncompleteRead
                cut = _reason(error)
                break
            if not chunk:
                break
            received += len(chunk)
            if file.size is not None and received > file.size:
                out.close()
                part.unlink()
                raise _Failed(f"sent more than the {file.size} bytes the file has")
            out.write(chunk)
            progress.update(received)
    progress.finish(received)
    return received, cut


def _size(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


class _Progress:
    """Bytes received of the total on `stream`: one line redrawn on a terminal, else a line every
    LINE_INTERVAL seconds, and a last line when the transfer ends."""

    def __init__(self, stream: TextIO, label: str, total: int | None):
        self.stream, self.label, self.total = stream, label, total
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.shown = time.monotonic()

    def _text(self, done: int) -> str:
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        return f"{self.label}: {_size(done)} / {_size(self.total)}{share}"

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.shown >= (TTY_INTERVAL if self.tty else LINE_INTERVAL):
            self.shown = now
            self.stream.write(f"\r{self._text(done)}\x1b[K" if self.tty else self._text(done) + "\n")
            self.stream.flush()

    def finish(self, done: int) -> None:
        self.stream.write(f"\r{self._text(done)}\x1b[K\n" if self.tty else self._text(done) + "\n")
        self.stream.flush()


def listing(data_dir: str | os.PathLike, registry: Mapping[str, DatasetSource] | None = None,
            manifest: Mapping[str, Sequence[Checksum]] | None = None) -> list[str]:
    """Lines describing every registered dataset: its files, sizes, checksums, URLs and whether each
    file is in data_dir (present = the file exists; fetch-data verifies it)."""
    registry = DATASETS if registry is None else registry
    manifest = MANIFEST if manifest is None else manifest
    lines = [f"data directory: {data_dir}"]
    for source in registry.values():
        default = "fetched when no name is given" if source.verifiable(manifest) else \
            "no known checksum: fetched only when named, kept only with --trust-unverified"
        lines.append(f"{source.name} ({default})")
        for file in source.files:
            checks = ", ".join(sorted({c.algorithm for c in manifest.get(file.key, ())})) or "checksum unknown"
            state = "present" if (Path(data_dir) / file.key).is_file() else "missing"
            lines.append(f"  {file.key}  {_size(file.size)}  {checks}  {state}")
            lines.extend(f"    {url}" for url in file.urls)
    return lines
