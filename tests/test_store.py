"""Results store: runs and verdicts round-trip, export/import merges, canonical JSON."""

import json

import pytest

from verify.store import ResultsStore, Run, canonical_json, merge_verdicts, read_export


def make_run(key="k1", device="cpu", outputs=None):
    return Run(key, "implementations.toy.protocols:toy", {"a": 1}, 7, device, "CPU", "2.13.0", "abc",
               outputs or {"retention": 1.0904, "m": [[1.0, 0.5]]}, 1.5, "2026-01-01T00:00:00+00:00")


def make_verdict(claim="c1", device="cpu", created="2026-01-01T00:00:00+00:00", verdict="reproduced"):
    # Every field of the export format (docs/CONTRACTS.md): an import checks them all.
    return {"claim_id": claim, "system": "toy", "device": device, "torch_version": "2.13.0", "profile": "smoke",
            "created": created, "verdict": verdict, "kind": "claim", "of": None, "title": claim, "quote": "x is 1",
            "source": {"repository": "someone/toy", "file": "README.md", "document": "toy.txt"},
            "metric": "value", "metric_args": {"key": "retention"}, "claimed": 1.0, "comparison": "equal",
            "tolerance": 0.01, "tolerance_origin": "test", "protocol": "implementations.toy.protocols:toy",
            "params": {"a": 1}, "deviation": None, "table": None, "tier": "ci", "expected": "reproduced",
            "direction": None, "reason": "inside the band", "seeds": [7], "values": [1.0], "mean": 1.0,
            "interval": None, "interval_method": None, "device_name": "CPU", "code_version": "abc",
            "environment": {"python": "3.11", "platform": "linux", "git_commit": None}, "run_keys": ["k1"]}


def test_run_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    run = make_run()
    store.put_run(run)
    assert store.get_run("k1") == run
    assert store.get_run("missing") is None
    assert store.raw_outputs("k1") == canonical_json(run.outputs)


def test_export_import_merges_devices(tmp_path):
    cpu = ResultsStore(tmp_path / "cpu.sqlite")
    cpu.put_run(make_run("k1"))
    cpu.put_verdict(make_verdict())
    cuda = ResultsStore(tmp_path / "cuda.sqlite")
    cuda.put_run(make_run("k2", "cuda"))
    cuda.put_verdict(make_verdict(device="cuda", verdict="not reproduced"))
    cuda.export_json(tmp_path / "cuda.json")
    assert cpu.import_json(tmp_path / "cuda.json") == (1, 1)
    assert {v["device"] for v in cpu.verdicts()} == {"cpu", "cuda"}
    assert cpu.get_run("k2").device == "cuda"


def test_read_export_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a results export"):
        read_export(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON results file"):
        read_export(path)


def test_merge_keeps_newest():
    old, new = make_verdict(created="2026-01-01T00:00:00+00:00"), make_verdict(created="2026-02-01T00:00:00+00:00", verdict="x")
    (merged,) = merge_verdicts([[old], [new]])
    assert merged["verdict"] == "x"


def test_canonical_json_rejects_nan():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    assert canonical_json({"b": 1, "a": [1.5]}) == '{"a":[1.5],"b":1}'
