"""Exports as an adversary writes them, and writes that a kill interrupts.

An export is checked whole before anything is written: a malformed one is one line naming the file
and the record, and leaves the store byte for byte as it was; one that is accepted imports in one
transaction and renders in the report. Every file the harness writes goes through a temporary file
renamed over the old one, so a kill at any moment leaves the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from verify import cli, report
from verify.store import (
    RUN_FIELDS,
    RUN_OPTIONAL_FIELDS,
    ExportError,
    ResultsStore,
    Run,
    read_export,
    write_text_atomic,
)

REPO = Path(__file__).resolve().parent.parent
VALID_EXPORT = REPO / "tests" / "fixtures" / "results-cpu.json"
RAW_MARK = "@@raw-value@@"  # replaced in the JSON text by what json.dumps cannot write (NaN, 1e400, ...)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, path: Path) -> str:
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert str(path) in err, err
    return err


@pytest.fixture(scope="module")
def baseline_store(tmp_path_factory) -> Path:
    """A store holding the valid export: the state every malformed import must leave untouched."""
    path = tmp_path_factory.mktemp("baseline") / "results.sqlite"
    ResultsStore(path).import_json(VALID_EXPORT)
    return path


def test_run_fields_are_those_of_run():
    assert set(RUN_FIELDS) | set(RUN_OPTIONAL_FIELDS) == {field.name for field in dataclasses.fields(Run)}


def test_an_older_export_without_threads_or_batching_imports_with_the_defaults(tmp_path, baseline_store):
    (run, *_) = ResultsStore(baseline_store).runs()
    assert run.threads is None and run.seed_batched is False
    exported = tmp_path / "again.json"
    ResultsStore(baseline_store).export_json(exported)
    again = ResultsStore(tmp_path / "again.sqlite")
    again.import_json(exported)
    assert again.runs() == ResultsStore(baseline_store).runs()
    assert again.verdicts() == ResultsStore(baseline_store).verdicts()


def mutated(path: Path, change) -> Path:
    document = json.loads(VALID_EXPORT.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("change,names", [
    (lambda d: d["verdicts"][3].pop("kind"), "verdict 3 ('dtgma-split-mnist-ewc-forgetting' on 'cpu'): field 'kind': missing"),
    (lambda d: d["verdicts"][0].update(mean="0.9"), "verdict 0"),
    (lambda d: d["verdicts"][0].update(verdict="great"), "field 'verdict': expected one of"),
    (lambda d: d["verdicts"][0].update(claimed=[1.0]), "field 'claimed': expected a list of 2"),
    (lambda d: d["verdicts"][0].update(values=[1e301]), "field 'values': item 0"),
    (lambda d: d["verdicts"][0].update(created=5), "field 'created': expected a string"),
    (lambda d: d["verdicts"][0].update(source={"repository": "x"}), "field 'source': field 'file': missing"),
    (lambda d: d["runs"][2].update(seed=2**70), "run 2 ("),
    (lambda d: d["runs"][2].update(seed=-1), "field 'seed': expected an integer in 0 .. 4294967295"),
    (lambda d: d["runs"][2].update(wall_seconds=True), "field 'wall_seconds'"),
    (lambda d: d["runs"][2].update(surprise=1), "field 'surprise': unknown field"),
    (lambda d: d["runs"][2].update(threads=0), "field 'threads'"),
    (lambda d: d["runs"][2].update(seed_batched="yes"), "field 'seed_batched'"),
    (lambda d: d["runs"][2]["outputs"].update(dataset_files=[1]), "field 'outputs': field 'dataset_files'"),
    (lambda d: d["runs"][2]["outputs"].update(accuracy_matrix=[1, 2]), "field 'outputs': field 'accuracy_matrix'"),
    (lambda d: d["runs"][2]["params"].update(deep=json.loads("[" * 80 + "]" * 80)), "nested deeper than 64"),
    (lambda d: d.update(runs={}), "field 'runs': expected a list"),
    (lambda d: d.pop("exported"), "field 'exported': missing"),
])
def test_each_malformed_export_is_one_line_naming_file_and_record(tmp_path, change, names):
    path = mutated(tmp_path / "bad.json", change)
    with pytest.raises(ExportError) as error:
        read_export(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and names in message, message


@pytest.mark.parametrize("field,raw,names", [
    ("mean", "NaN", "verdict 0 .* field 'mean'"),
    ("mean", "Infinity", "verdict 0 .* field 'mean'"),
    ("mean", "1e400", "verdict 0 .* field 'mean'"),
    ("params", '{"x": NaN}', "verdict 0 .* field 'params': nan is not a number JSON allows"),
    ("title", '"\\ud800"', "verdict 0 .* field 'title': text '\\\\ud800' is not valid Unicode"),
])
def test_what_json_readers_take_but_canonical_json_and_utf8_refuse(tmp_path, field, raw, names):
    document = json.loads(VALID_EXPORT.read_text())
    document["verdicts"][0][field] = RAW_MARK
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document).replace(json.dumps(RAW_MARK), raw))
    with pytest.raises(ExportError, match=names):
        read_export(path)


def test_not_utf8_and_not_json_are_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ExportError, match="not UTF-8"):
        read_export(path)
    path.write_text("[" * 100000)
    with pytest.raises(ExportError, match="not a JSON results file"):
        read_export(path)


def test_import_is_all_or_nothing_across_files(tmp_path, baseline_store):
    store = tmp_path / "results.sqlite"
    good = tmp_path / "good.json"
    ResultsStore(baseline_store).export_json(good)
    bad = mutated(tmp_path / "bad.json", lambda d: d["verdicts"][-1].update(verdict="great"))
    code, out, err = run_cli("import", "--results", str(store), str(good), str(bad))
    assert_one_line_error(code, err, bad)
    assert not store.exists() and out == ""  # nothing of the good file either, not even an empty store
    shutil.copy(baseline_store, store)
    before = store.read_bytes()
    code, _, err = run_cli("import", "--results", str(store), str(good), str(bad))
    assert_one_line_error(code, err, bad)
    assert store.read_bytes() == before


def test_a_failure_inside_the_import_transaction_rolls_all_of_it_back(tmp_path, baseline_store, monkeypatch):
    from verify import store as store_module

    other = tmp_path / "other.json"
    document = json.loads(VALID_EXPORT.read_text())
    for record in [*document["runs"], *document["verdicts"]]:
        record["torch_version"] = "9.9.9"
    for run in document["runs"]:
        run["run_key"] += "-other"
    other.write_text(json.dumps(document))
    store = ResultsStore(tmp_path / "results.sqlite")
    store.import_json(VALID_EXPORT)
    runs, verdicts = store.runs(), store.verdicts()
    rows = []
    real_row = store_module._verdict_row

    def failing_row(record):
        rows.append(record)
        if len(rows) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return real_row(record)

    monkeypatch.setattr(store_module, "_verdict_row", failing_row)
    with pytest.raises(sqlite3.OperationalError):
        store.import_json(other)
    assert store.runs() == runs and store.verdicts() == verdicts  # its runs, written first, went too


def test_report_merge_of_a_bad_export_is_one_line(tmp_path):
    bad = mutated(tmp_path / "bad.json", lambda d: d["runs"][5]["outputs"].update(accuracy_matrix=[[1], "x"]))
    code, _, err = run_cli("report", "--results", str(tmp_path / "absent.sqlite"), "--merge", str(VALID_EXPORT),
                           str(bad), "--out", str(tmp_path / "index.html"))
    assert "run 5 (" in assert_one_line_error(code, err, bad)
    assert not (tmp_path / "index.html").exists()


def test_a_store_that_is_not_a_database_is_one_line(tmp_path):
    store = tmp_path / "results.sqlite"
    store.write_text("not a database")
    code, _, err = run_cli("import", "--results", str(store), str(VALID_EXPORT))
    assert_one_line_error(code, err, store)
    assert store.read_text() == "not a database"


# -- generated malformed exports ---------------------------------------------------------------

JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**80, 2**80), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                                 max_size=2),
)
# Written into the JSON text as is: what Python's reader accepts but JSON, SQLite or UTF-8 do not.
RAW_VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(2**70), '"\\ud800"', '"a\\u0000b"',
              "[" * 70 + "]" * 70, "1e-320", "-0.0", '""', '"a\\nb"', "[]", "{}"]


def _type_of(value) -> str:
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


@st.composite
def malformed_exports(draw) -> tuple[str, str | None]:
    """The valid export with one field of one record (or of the document) dropped, retyped,
    corrupted or injected. Returns the JSON text and the label of the changed record."""
    document = json.loads(VALID_EXPORT.read_text())
    kind = draw(st.sampled_from(["runs", "verdicts", "document"]))
    if kind == "document":
        target, label = document, None
    else:
        index = draw(st.integers(0, len(document[kind]) - 1))
        target, label = document[kind][index], f"{'run' if kind == 'runs' else 'verdict'} {index}"
        if kind == "runs" and draw(st.booleans()):
            target = target[draw(st.sampled_from(["outputs", "params"]))]  # free content, with conventions
    raw = None
    operation = draw(st.sampled_from(["drop", "retype", "corrupt", "inject"]))
    names = sorted(target)
    if operation == "drop" and names:
        del target[draw(st.sampled_from(names))]
    elif operation == "retype" and names:
        name = draw(st.sampled_from(names))
        target[name] = draw(JSON_VALUES.filter(lambda value: _type_of(value) != _type_of(target[name])))
    elif operation == "corrupt" and names:
        target[draw(st.sampled_from(names))] = RAW_MARK
        raw = draw(st.sampled_from(RAW_VALUES))
    else:
        target[draw(st.text(min_size=1, max_size=8))] = draw(JSON_VALUES)
    text = json.dumps(document)
    return (text if raw is None else text.replace(json.dumps(RAW_MARK), raw)), label


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed_exports())
def test_generated_exports_are_rejected_in_one_line_with_the_store_unchanged_or_import_and_render(
        tmp_path, baseline_store, case):
    text, label = case
    export = tmp_path / "export.json"
    export.write_text(text, encoding="utf-8")
    store = tmp_path / "results.sqlite"
    shutil.copy(baseline_store, store)
    before = store.read_bytes()
    code, _, err = run_cli("import", "--results", str(store), str(export))
    if code != 0:
        message = assert_one_line_error(code, err, export)
        event("rejected")
        if label is not None and "not a JSON results file" not in message:
            assert re.search(rf"\b{label}[ :]", message), message
        assert store.read_bytes() == before
        code, _, err = run_cli("report", "--results", str(tmp_path / "absent.sqlite"), "--merge", str(export),
                               "--out", str(tmp_path / "merged.html"))
        assert_one_line_error(code, err, export)
        return
    # Accepted: the store and the report take it as they take any export.
    event("accepted")
    code, _, err = run_cli("report", "--results", str(store), "--out", str(tmp_path / "index.html"))
    assert code == 0, err
    code, _, err = run_cli("report", "--results", str(tmp_path / "absent.sqlite"), "--merge", str(export),
                           "--out", str(tmp_path / "merged.html"))
    assert code == 0, err


# -- atomic writes -------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


@pytest.mark.parametrize("writer", ["text", "report", "export"])
def test_a_failure_between_write_and_rename_leaves_the_previous_file(tmp_path, monkeypatch, writer, baseline_store):
    target = tmp_path / "out" / "file"
    target.parent.mkdir()
    target.write_text("the previous good file\n")

    def failing_replace(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        if writer == "text":
            write_text_atomic(target, "new")
        elif writer == "report":
            report.write_report(ResultsStore(baseline_store).verdicts(), [], target)
        else:
            ResultsStore(baseline_store).export_json(target)
    assert target.read_text() == "the previous good file\n"
    assert leftovers(target.parent) == []


def test_atomic_writes_keep_the_usual_permissions(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    write_text_atomic(atomic, "x")
    assert atomic.stat().st_mode == plain.stat().st_mode


KILLED_WRITER = '''
import sys
from verify.store import write_text_atomic
text = "new report line\\n" * (2 << 20)
print("writing", flush=True)
write_text_atomic(sys.argv[1], text)
print("done", flush=True)
'''


def test_kill_9_during_a_write_leaves_the_previous_file_or_the_new_one(tmp_path):
    target = tmp_path / "index.html"
    old = "the previous good report\n" * 1000
    new = "new report line\n" * (2 << 20)
    interrupted = 0
    for delay in (0.0, 0.002, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4):
        target.write_text(old)
        for path in tmp_path.glob(".*.tmp"):
            path.unlink()
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "writing\n"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
        content = target.read_text()
        assert content in (old, new), f"a kill after {delay} s left {len(content)} characters"
        interrupted += "done" not in rest and content == old and bool(leftovers(tmp_path))
    assert interrupted, "no kill landed during a write: the test proved nothing"


def test_the_export_fixture_itself_is_valid():
    document = read_export(VALID_EXPORT)
    assert len(document["runs"]) == 16 and len(document["verdicts"]) == 10
