"""Ledgers as an adversary writes them: every malformed one is rejected on load with one line that
names the file (and the entry and field where there is one), never a traceback; a protocol is a
plain function defined under implementations/, so a ledger cannot run arbitrary code."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from verify import cli
from verify.ledger import LedgerError, duplicate_ids, load_all, load_ledger, resolve_protocol

PROTOCOL = "implementations.sgm.protocols:quickstart_retention"
DOCUMENT_TEXT = "The toy README says: retention is 1.0000x\u00a0exactly, and more."

# The valid claim every malformed one is made from, as data (rendered to TOML by `toml_entry`).
VALID = {
    "id": "toy-claim",
    "system": "toy",
    "source": {"repository": "someone/toy", "file": "README.md", "document": "toy.txt"},
    "quote": "retention is 1.0000x exactly",
    "metric": "value",
    "metric_args": {"key": "retention"},
    "claimed": 1.0,
    "comparison": "equal",
    "kind": "exact",
    "tolerance": 0.00005,
    "tolerance_origin": "printed to 4 decimals",
    "protocol": PROTOCOL,
    "params": {"tasks": 3},
    "seeds": [1, 2, 3],
    "tier": "ci",
    "device": "any",
}


def toml_value(value) -> str:
    """A TOML literal for a value (TOML has no writer in the standard library)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = "".join(
            {'"': '\\"', "\\": "\\\\"}.get(char, char) if char.isprintable() or char == " " else f"\\U{ord(char):08x}"
            for char in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{ " + ", ".join(f"{toml_value(key)} = {toml_value(item)}" for key, item in value.items()) + " }"


def toml_entry(fields: dict, kind: str = "claim") -> str:
    return f"[[{kind}]]\n" + "".join(f"{toml_value(name)} = {toml_value(value)}\n" for name, value in fields.items())


@pytest.fixture
def seeds_dir(tmp_path):
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "toy.txt").write_text(DOCUMENT_TEXT, encoding="utf-8")
    return folder


def write(tmp_path: Path, text: str | bytes, name: str = "claims.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def rejection(path: Path, seeds_dir: Path | None = None) -> str:
    """The one-line message a malformed ledger is rejected with."""
    with pytest.raises(LedgerError) as error:
        load_ledger(path, seeds_dir)
    message = str(error.value)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    return message


def test_the_valid_claim_loads_and_its_quote_is_found(tmp_path, seeds_dir):
    (entry,) = load_ledger(write(tmp_path, toml_entry(VALID)), seeds_dir)
    assert entry.protocol == PROTOCOL and entry.seeds == (1, 2, 3)


@pytest.mark.parametrize("field,value,problem", [
    ("tolerance", math.nan, "finite"),
    ("tolerance", math.inf, "finite"),
    ("tolerance", -0.5, ">= 0"),
    ("claimed", math.nan, "finite"),
    ("claimed", -math.inf, "finite"),
    ("claimed", [0.0, math.inf], "finite"),
    ("seeds", [-1], "outside 0 .. 2**32 - 1"),
    ("seeds", [4294967296], "outside 0 .. 2**32 - 1"),
    ("seeds", [], "non-empty list of integers"),
    ("seeds", [1.5], "non-empty list of integers"),
    ("seeds", [True], "non-empty list of integers"),
    ("protocol", "implementations.sgm.protocols:does_not_exist", "defines no 'does_not_exist'"),
    ("protocol", "a.b:c", "module a.b is not under"),
    ("protocol", PROTOCOL + "\n", "is not 'package.module:function'"),
    ("protocol", "implementations.sgm.protocols:quickstart_retention:x", "is not 'package.module:function'"),
    ("protocol", "implementations.sgm.nothing_here:f", "cannot import implementations.sgm.nothing_here"),
    ("params", {"seed": 5}, "seed is set by the runner"),
    ("params", {"device": "cuda"}, "device is set by the runner"),
    ("params", {"data_dir": "/tmp"}, "data_dir is set by the runner"),
    ("params", {"seeds": [1]}, "seeds is set by the runner"),
    ("params", {"x": math.nan}, "JSON cannot store"),
    ("smoke_params", {"seed": 1}, "seed is set by the runner"),
    ("metric_args", {"nonsense": 1}, "do not fit metric 'value'"),
    ("quote", "", "is blank"),
    ("quote", "   \t", "is blank"),
    ("quote", "\u00a0\u00a0", "is blank"),
    ("id", "toy\nclaim", "not a lower-case slug"),
    ("source", {"repository": "r", "file": "f", "document": 5}, "'document' must be a string"),
    ("source", {"repository": "r", "file": "f", "document": "../../etc/passwd"}, "must not contain '..'"),
    ("source", {"repository": "r", "file": "f", "document": "a/../../b.txt"}, "must not contain '..'"),
    ("source", {"repository": "r", "file": "f", "document": "/etc/passwd"}, "must be relative"),
    ("source", {"repository": "r", "file": "f", "document": "C:/x.txt"}, "must be relative"),
    ("source", {"repository": "r", "file": "f", "document": " "}, "is blank"),
])
def test_each_bad_field_is_one_line_naming_file_entry_and_field(tmp_path, field, value, problem):
    path = write(tmp_path, toml_entry({**VALID, field: value}))
    message = rejection(path)
    assert f"field '{field}'" in message and problem in message, message
    assert "\n" not in message and ("claim 'toy-claim'" in message or field == "id")


def test_an_id_with_a_newline_is_named_by_position_on_one_line(tmp_path):
    message = rejection(write(tmp_path, toml_entry({**VALID, "id": "a\nb"})))
    assert "claim #1: field 'id': 'a\\nb' is not a lower-case slug" in message


def test_a_field_name_with_a_newline_stays_on_one_line(tmp_path):
    message = rejection(write(tmp_path, toml_entry({**VALID, "bad\nname": 1})))
    assert "field 'bad\\nname': unknown field" in message


@pytest.mark.parametrize("name", ["numpy:savez", "torch.hub:load", "os:system", "builtins:exec", "subprocess:run"])
def test_a_protocol_outside_implementations_is_never_run_or_even_imported(tmp_path, name):
    """Regression: `numpy:savez` wrote a file, `torch.hub:load` ran a local hubconf.py, and both passed."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\ndef model(): return 1\n")
    params = {"file": str(tmp_path / "written.npz")} if name == "numpy:savez" else {"repo_or_dir": str(hub)}
    message = rejection(write(tmp_path, toml_entry({**VALID, "protocol": name, "params": params})))
    assert "field 'protocol'" in message and "is not under" in message
    assert not (tmp_path / "written.npz").exists() and not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name,problem", [
    ("implementations.common.datasets:replace", "not a plain function defined in"),  # imported from dataclasses
    ("implementations.common.datasets:LabelledImages", "not a plain function defined in"),  # a class
    ("implementations.common.checksums:MANIFEST", "not a plain function defined in"),  # data
    ("implementations.common.datasets:np", "not a plain function defined in"),  # a module
])
def test_only_plain_functions_defined_in_the_module_are_protocols(tmp_path, name, problem):
    message = rejection(write(tmp_path, toml_entry({**VALID, "protocol": name})))
    assert problem in message


def test_a_module_outside_the_roots_is_not_imported_and_extra_roots_are_explicit(tmp_path, monkeypatch):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    marker = tmp_path / "imported"
    (folder / "sideeffect_protocols.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "def measure(*, seed, device, data_dir):\n    return {'x': 1.0}\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("CLAIMS_PROTOCOL_ROOTS", raising=False)
    path = write(tmp_path, toml_entry({**VALID, "protocol": "sideeffect_protocols:measure"}))
    assert "is not under" in rejection(path)
    assert not marker.exists() and "sideeffect_protocols" not in sys.modules
    monkeypatch.setenv("CLAIMS_PROTOCOL_ROOTS", str(folder))
    try:
        (entry,) = load_ledger(path)
        assert marker.exists() and resolve_protocol(entry.protocol)(seed=1, device="cpu", data_dir=tmp_path) == {"x": 1.0}
    finally:
        sys.modules.pop("sideeffect_protocols", None)


@pytest.mark.parametrize("text,problem", [
    ("claim = 5\n", "'claim' must be an array of tables"),
    ("claim = [1, 2]\n", "'claim' must be an array of tables"),
    ('finding = "x"\n', "'finding' must be an array of tables"),
    ("[claim]\nid = 'x'\n", "'claim' must be an array of tables"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("[[claim]\nid=", "not valid TOML"),
    ('"bad\\nkey" = 1\n', "unknown top-level table(s) ['bad\\nkey']"),
])
def test_malformed_files_are_one_line_naming_the_file(tmp_path, text, problem):
    assert problem in rejection(write(tmp_path, text))


def test_a_ledger_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    message = rejection(write(tmp_path, b"\xff\xfe" + toml_entry(VALID).encode("utf-16-le")))
    assert "not UTF-8 text" in message


def test_quotes_are_normalised_only_as_documented(tmp_path, seeds_dir):
    # Whitespace runs (the non-breaking space included) match any whitespace run; nothing else is loosened.
    assert load_ledger(write(tmp_path, toml_entry({**VALID, "quote": "1.0000x   exactly"})), seeds_dir)
    for changed in ("Retention is 1.0000x exactly", "retention is 1.0000x exactly.", "retention is\u200b 1.0000x"):
        message = rejection(write(tmp_path, toml_entry({**VALID, "quote": changed}), "changed.toml"), seeds_dir)
        assert "field 'quote': not found in" in message


def test_a_document_must_be_utf8_and_inside_the_seeds_folder(tmp_path, seeds_dir):
    (seeds_dir / "latin1.txt").write_bytes("retention is 1.0000x exactly \xe9".encode("latin-1"))
    source = {**VALID["source"], "document": "latin1.txt"}
    message = rejection(write(tmp_path, toml_entry({**VALID, "source": source})), seeds_dir)
    assert str(seeds_dir / "latin1.txt") in message and "not UTF-8" in message
    outside = tmp_path / "outside.txt"
    outside.write_text(DOCUMENT_TEXT)
    (seeds_dir / "link.txt").symlink_to(outside)
    source = {**VALID["source"], "document": "link.txt"}
    message = rejection(write(tmp_path, toml_entry({**VALID, "source": source}), "link.toml"), seeds_dir)
    assert "lies outside" in message


def test_duplicate_ids_are_found_in_linear_time(tmp_path):
    entries = [toml_entry({**VALID, "id": f"claim-{index}"}) for index in range(3000)]
    path = write(tmp_path, "".join(entries) + toml_entry({**VALID, "id": "claim-17"}))
    assert "entry 'claim-17': field 'id': used more than once" in rejection(path)
    # A count per id (the old check) grows with the square: 4e10 comparisons here, hours.
    ids = [f"claim-{index}" for index in range(200_000)]
    started = time.perf_counter()
    assert duplicate_ids([*ids, "claim-7", "claim-99"]) == ["claim-7", "claim-99"]
    assert time.perf_counter() - started < 5


def test_check_ledgers_prints_one_line_for_a_bad_ledger(tmp_path, capsys):
    (tmp_path / "claims" / "toy").mkdir(parents=True)
    write(tmp_path / "claims" / "toy", toml_entry({**VALID, "protocol": "numpy:savez"}))
    assert cli.main(["check-ledgers", "--claims-dir", str(tmp_path / "claims")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and "field 'protocol'" in error


# -- generated malformed ledgers ---------------------------------------------------------------

# Values of every TOML type, and the corruptions the probe found: non-finite numbers, seeds out of
# numpy's range, names that resolve outside implementations/, control characters, blank text.
ANY_VALUE = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
CORRUPT_VALUE = st.sampled_from([
    math.nan, math.inf, -math.inf, -1, 2**32, 2**64, "", " ", "\u00a0", "a\nb", "x\u0000", "../..", "/etc/passwd",
    "numpy:savez", "torch.hub:load", "a.b:c", PROTOCOL + "\n", [], [-1], [2**32], [math.nan], [1, 1],
    {"seed": 1}, {"device": "cpu"}, {"x": math.nan}, {"document": "../x"}, [[[]]],
])


@st.composite
def malformed_ledgers(draw) -> tuple[str, str]:
    """The valid claim with one field dropped, retyped, corrupted, or one field injected."""
    fields = dict(VALID)
    name = draw(st.sampled_from(sorted(fields)))
    operation = draw(st.sampled_from(["drop", "retype", "corrupt", "inject", "inject-param"]))
    if operation == "drop":
        del fields[name]
    elif operation == "retype":
        fields[name] = draw(ANY_VALUE.filter(lambda value: type(value) is not type(VALID[name])))
    elif operation == "corrupt":
        fields[name] = draw(CORRUPT_VALUE)
    elif operation == "inject":
        name = draw(st.text(min_size=1, max_size=8).filter(lambda text: text not in VALID))
        fields[name] = draw(ANY_VALUE)
    else:
        name = "params"
        fields["params"] = {**VALID["params"], draw(st.sampled_from(["seed", "seeds", "device", "data_dir"])): 1}
    return toml_entry(fields), name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed_ledgers())
def test_generated_malformed_ledgers_are_rejected_in_one_line_or_load_clean(tmp_path, seeds_dir, case):
    text, name = case
    path = write(tmp_path, text)
    try:
        entries = load_ledger(path, seeds_dir)
    except LedgerError as error:
        message = str(error)
        event("rejected")
        assert "\n" not in message and str(path) in message
        return
    # Accepted: only a harmless change (an optional field dropped, or a value as good as the original).
    event("accepted")
    (entry,) = entries
    assert all(0 <= seed < 2**32 for seed in entry.seeds) and math.isfinite(entry.tolerance)
    assert resolve_protocol(entry.protocol) and not set(entry.params) & {"seed", "seeds", "device", "data_dir"}


def test_the_repository_ledgers_still_load():
    assert load_all(Path(__file__).resolve().parent.parent / "claims")
