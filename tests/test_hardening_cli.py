"""The command lines as an adversary uses them: every bad ledger is a collection error of its own
file (the session is never aborted with INTERNALERROR), every unusable option one usage error
before any item runs, and no bad input ends in a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TOY_PROTOCOL = '''
import os
import pathlib


def measure(*, seed, device, data_dir, marker="", block=""):
    if marker:
        pathlib.Path(marker).write_text("ran")
    if block:  # a folder where the report goes: the write at the end of the session fails
        os.makedirs(block, exist_ok=True)
    return {"x": 1.0}
'''


def claim(claim_id: str, protocol: str = "toyproto:measure", params: str = "{}", document: str = '"toy.txt"') -> str:
    return f'''
[[claim]]
id = "{claim_id}"
system = "toy"
source = {{ repository = "someone/toy", file = "README.md", document = {document} }}
quote = "x is 1.0"
metric = "value"
metric_args = {{ key = "x" }}
claimed = 1.0
comparison = "equal"
kind = "exact"
tolerance = 0.01
tolerance_origin = "test"
protocol = "{protocol}"
params = {params}
seeds = [1]
tier = "ci"
device = "any"
'''


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "claims").mkdir(parents=True)
    (root / "toyproto.py").write_text(TOY_PROTOCOL)
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "toy.txt").write_text("The toy README: x is 1.0.")
    return root


def ledger(project: Path, system: str, text: str | bytes) -> Path:
    path = project / "claims" / system / "claims.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def pytest_session(project: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(project), "CLAIMS_PROTOCOL_ROOTS": str(project),
                   "CLAIMS_SEEDS_DIR": str(project.parent / "seeds")}
    return subprocess.run([sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "--data-dir",
                           str(project / "data"), *args], cwd=project, env=environment, capture_output=True,
                          text=True, timeout=300)


def test_each_bad_ledger_is_an_error_of_its_own_file_and_the_rest_still_runs(project):
    written = project.parent / "written.npz"
    ledger(project, "good", claim("good"))
    bad = {
        "scalar": ledger(project, "scalar", "claim = 5\n"),
        "document": ledger(project, "document", claim("doc", document="5")),
        "latin1": ledger(project, "latin1", claim("caf\xe9").encode("latin-1")),
        "nested": ledger(project, "nested", "a = " + "[" * 3000 + "]" * 3000 + "\n"),
        "savez": ledger(project, "savez", claim("savez", "numpy:savez", f'{{ file = "{written}" }}')),
    }
    done = pytest_session(project, "--continue-on-collection-errors")
    output = done.stdout + done.stderr
    assert "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]
    assert "1 passed, 5 errors" in output, output[-3000:]
    for path in bad.values():
        assert f"ERROR collecting claims/{path.parent.name}/claims.toml" in output
    assert "'claim' must be an array of tables" in output and "'document' must be a string" in output
    assert "not UTF-8 text" in output and "nested too deeply" in output and "module numpy is not under" in output
    assert not written.exists()


def not_a_database(project: Path) -> str:
    (project / "r.sqlite").write_text("not a database")
    return "r.sqlite"


def unwritable_folder(project: Path) -> str:
    blocker = project / "a-file"
    blocker.write_text("")
    return str(blocker / "reports")


@pytest.mark.parametrize("make_args,message", [
    (lambda project: ["--seeds", "0"], "--seeds must be at least 1, got 0"),
    (lambda project: ["--seeds", "-1"], "--seeds must be at least 1, got -1"),
    (lambda project: ["--results", unwritable_folder(project) + "/r.sqlite"], "cannot write in"),
    (lambda project: ["--verdicts-json", str(project)], "is a folder"),
    (lambda project: ["--results", not_a_database(project)], "file is not a database"),
    (lambda project: ["--report-html", unwritable_folder(project) + "/index.html"], "cannot write in"),
])
def test_an_unusable_option_is_one_usage_error_before_anything_runs(project, make_args, message):
    marker = project / "ran"
    ledger(project, "toy", claim("toy", params=f'{{ marker = "{marker}" }}'))
    done = pytest_session(project, *make_args(project))
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.count(message) == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert not marker.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_device_cuda_without_cuda_is_one_usage_error(project):
    ledger(project, "toy", claim("toy"))
    done = pytest_session(project, "--device", "cuda")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--device cuda: torch.cuda.is_available() is False" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_reports_folder_is_one_usage_error(project):
    reports = project / "reports"
    reports.mkdir()
    reports.chmod(0o555)
    ledger(project, "toy", claim("toy"))
    try:
        done = pytest_session(project)
    finally:
        reports.chmod(0o755)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR and "Traceback" not in done.stderr
    assert "cannot write in" in done.stderr


def test_a_report_that_cannot_be_written_at_the_end_is_one_line_after_the_results(project):
    """The folder was writable when checked, but the report path turns into a folder during the run."""
    report = project / "reports" / "index.html"
    ledger(project, "toy", claim("toy", params=f'{{ block = "{report}" }}'))
    done = pytest_session(project)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert "1 passed" in output and "HTML report not written: [Errno 21] Is a directory" in output
    assert (project / "reports" / "verdicts.json").is_file()


def test_verify_import_of_a_bad_export_is_one_line_and_no_store(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "claims-harness-results/1", "exported": "now", "runs": [{"seed": 1}], "verdicts": []}')
    store = tmp_path / "results.sqlite"
    done = subprocess.run([sys.executable, "-m", "verify", "import", "--results", str(store), str(bad)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{bad}: run 0: field 'run_key': missing" in done.stderr
    assert not store.exists()
