"""End to end through pytest: ledger entries become tests, verdicts map to outcomes, runs are cached.

Each test writes a small ledger (data only) into a temporary project and runs pytest on it.
"""

import json
import os
import re
import time

import pytest

pytest_plugins = ["pytester"]

TOY_PROTOCOL = '''
class Missing(FileNotFoundError):
    not_run = True

def measure(*, seed, device, data_dir, base=1.0, spread=0.0, sleep=0.0):
    import time
    time.sleep(sleep)
    return {"x": base + spread * (seed % 3), "device": device}

def needs_file(*, seed, device, data_dir):
    raise Missing(f"dataset file {data_dir}/toy/train.bin is missing")
'''


def entry(claim_id, claimed, baseline=None, protocol="toyproto:measure", params="{}", seeds="[1, 2, 3]", comparison="equal",
          tolerance=0.01, kind="exact"):
    return f'''
[[claim]]
id = "{claim_id}"
# baseline: {baseline}
system = "toy"
source = {{ repository = "someone/toy", file = "README.md", document = "toy.txt" }}
quote = "x is {claimed}"
metric = "value"
metric_args = {{ key = "x" }}
claimed = {claimed}
comparison = "{comparison}"
kind = "{kind}"
tolerance = {tolerance}
tolerance_origin = "test"
protocol = "{protocol}"
params = {params}
seeds = {seeds}
tier = "ci"
device = "any"
'''


@pytest.fixture
def project(pytester, tmp_path, monkeypatch):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "toy.txt").write_text("The toy README: x is 1.0, x is 2.0.")
    monkeypatch.setenv("CLAIMS_SEEDS_DIR", str(seeds))
    pytester.makepyfile(toyproto=TOY_PROTOCOL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CLAIMS_PROTOCOL_ROOTS", str(pytester.path))  # toyproto may define protocols
    (pytester.path / "claims" / "toy").mkdir(parents=True)
    return pytester


def write_ledger(project, text):
    """The ledger, and results/baseline.json with the verdicts its entries' `# baseline:` lines name."""
    (project.path / "claims" / "toy" / "claims.toml").write_text(text)
    recorded = dict(re.findall(r'^id = "(.+)"\n# baseline: (.+)$', text, flags=re.MULTILINE))
    write_baseline(project, {claim: verdict for claim, verdict in recorded.items() if verdict != "None"})


def write_baseline(project, verdicts, slot="cpu/smoke"):
    path = project.path / "results" / "baseline.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"format": "claims-harness-baseline/1",
                                "verdicts": {claim: {slot: verdict} for claim, verdict in verdicts.items()}}))


def run(project, *args):
    # A subprocess: an in-process rerun would re-import torch modules that pytester unloads in between.
    return project.runpytest_subprocess("claims", "-p", "no:cacheprovider", "--data-dir", str(project.path / "data"), *args)


def test_outcomes_follow_verdicts(project):
    write_ledger(project, "".join([
        entry("holds", 1.0, "reproduced"),
        entry("false-claim", 2.0, "not reproduced (below)"),  # a deliberately false claim, data only
        entry("flipped", 1.0, "not reproduced (below)"),  # recorded as failing but now reproduces -> strict failure
        entry("missing-data", 1.0, "reproduced", protocol="toyproto:needs_file"),
    ]))
    result = run(project)
    result.assert_outcomes(passed=1, xfailed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "*flipped: baseline 'not reproduced (below)', measured 'reproduced'*--update-baseline*",
        "*claims verdicts (cpu, profile smoke)*",
        "*false-claim*2*1*not reproduced (below)*",
        "*toy/train.bin is missing*",
    ])
    verdicts = {r["claim_id"]: r for r in json.loads((project.path / "reports" / "verdicts.json").read_text())}
    assert verdicts["false-claim"]["verdict"] == "not reproduced"
    assert verdicts["false-claim"]["values"] == [1.0, 1.0, 1.0]
    assert verdicts["missing-data"]["verdict"] == "not run"
    assert (project.path / "reports" / "index.html").read_text().count("<tr") >= 5


def test_a_verdict_with_no_baseline_is_new_and_update_baseline_records_it(project):
    write_ledger(project, entry("fresh", 1.0) + entry("false-claim", 2.0))
    result = run(project)
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*new: 2 entries have no baseline verdict on cpu/smoke yet*fresh, false-claim*"])
    result = run(project, "--update-baseline")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*baseline cpu/smoke: 0 verdicts changed, 2 new*"])
    recorded = json.loads((project.path / "results" / "baseline.json").read_text())["verdicts"]
    assert recorded == {"false-claim": {"cpu/smoke": "not reproduced (below)"}, "fresh": {"cpu/smoke": "reproduced"}}
    result = run(project)
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.no_fnmatch_line("*new: *")
    # A verdict that differs from the recorded one fails, naming both.
    write_baseline(project, {"fresh": "not reproduced (above)", "false-claim": "not reproduced (below)"})
    result = run(project)
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*fresh: baseline 'not reproduced (above)', measured 'reproduced'*"])


def test_an_unreadable_baseline_is_one_usage_error(project):
    write_ledger(project, entry("fresh", 1.0))
    (project.path / "results" / "baseline.json").write_text("{not json")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*baseline*baseline.json: cannot be read*"])


def test_under_xdist_workers_run_the_items_and_the_controller_alone_reports_them(project):
    write_ledger(project, "".join([
        entry("holds", 1.0, "reproduced"),
        entry("false-claim", 2.0, "not reproduced (below)"),
        entry("fresh", 1.0, params="{ spread = 0.0 }"),  # no baseline verdict yet: new
        entry("missing-data", 1.0, "reproduced", protocol="toyproto:needs_file"),
    ]))
    result = run(project, "-n", "2")
    result.assert_outcomes(passed=2, xfailed=1, skipped=1)
    output = result.stdout.str()
    assert output.count("claims verdicts (cpu, profile smoke)") == 1
    result.stdout.fnmatch_lines(["*false-claim*2*1*not reproduced (below)*", "*new: 1 entries*: fresh*",
                                 "*HTML report:*index.html*"])
    verdicts = {r["claim_id"]: r for r in json.loads((project.path / "reports" / "verdicts.json").read_text())}
    assert set(verdicts) == {"holds", "false-claim", "fresh", "missing-data"}
    assert verdicts["false-claim"]["values"] == [1.0, 1.0, 1.0]
    run(project, "-n", "2", "--update-baseline").assert_outcomes(passed=2, xfailed=1, skipped=1)
    recorded = json.loads((project.path / "results" / "baseline.json").read_text())["verdicts"]
    assert recorded["fresh"] == {"cpu/smoke": "reproduced"}
    assert recorded["missing-data"] == {"cpu/smoke": "reproduced"}  # `not run` never erases a measured verdict


def test_second_run_is_cached_and_fast(project):
    write_ledger(project, entry("slow", 1.0, "reproduced", params="{ sleep = 0.5 }"))
    started = time.perf_counter()
    run(project).assert_outcomes(passed=1)
    first = time.perf_counter() - started
    started = time.perf_counter()
    result = run(project)
    second = time.perf_counter() - started
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*pending: 0 run(s) in 0 job(s)*already stored: 3*"])
    assert first > 1.5 and second < first - 1.0
    result = run(project, "--no-cache")
    result.stdout.fnmatch_lines(["*[[]1/3] measure seed 1 on cpu: done*"])


def test_seed_limit_and_interval(project):
    write_ledger(project, entry("spread", 1.0, "inconclusive", params="{ spread = 0.1 }", seeds="[1, 2, 3, 4, 5]",
                                tolerance=0.05, kind="mean"))
    run(project).assert_outcomes(xfailed=1)
    record = json.loads((project.path / "reports" / "verdicts.json").read_text())[0]
    assert record["values"] == [1.1, 1.2, 1.0, 1.1, 1.2]
    assert record["interval_method"] == "t"
    # One seed: 1.1 lies outside the band, but a mean claim needs 5 seeds for a definite verdict.
    run(project, "--seeds", "1").assert_outcomes(xfailed=1)
    record = json.loads((project.path / "reports" / "verdicts.json").read_text())[0]
    assert record["seeds"] == [1] and "needs at least 5" in record["reason"]


def test_malformed_ledger_is_a_one_line_collection_error(project):
    write_ledger(project, entry("bad", 1.0, "reproduced").replace("tolerance = 0.01", 'tolerance = "tiny"'))
    result = run(project)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*claims.toml: claim 'bad': field 'tolerance': expected int or float, got str 'tiny'"])


def test_a_selected_run_merges_into_the_verdicts_json(project):
    write_ledger(project, entry("first", 1.0, "reproduced") + entry("second", 2.0, "not reproduced (below)"))
    run(project).assert_outcomes(passed=1, xfailed=1)
    run(project, "-k", "first").assert_outcomes(passed=1, deselected=1)
    records = json.loads((project.path / "reports" / "verdicts.json").read_text())
    assert sorted(record["claim_id"] for record in records) == ["first", "second"]


def test_entries_are_selected_by_dataset_with_m(project):
    write_ledger(project, entry("reads-mnist", 1.0, "reproduced") + 'datasets = ["mnist"]\n'
                 + entry("reads-qwen", 1.0, "reproduced") + 'datasets = ["qwen2.5-1.5b"]\n'
                 + entry("reads-nothing", 1.0, "reproduced"))
    def selected(expression):
        result = project.runpytest_subprocess("claims", "-p", "no:cacheprovider", "--collect-only", "-q",
                                              "--strict-markers", "-m", expression)
        return sorted(line.split("::")[-1] for line in result.stdout.lines if "::" in line)
    assert selected("mnist") == ["reads-mnist"]
    assert selected("qwen2_5_1_5b") == ["reads-qwen"]
    assert selected("not dataset") == ["reads-nothing"]


def test_entries_are_selected_by_tier_with_m(project):
    full = entry("quoted", 1.0, "reproduced").replace('tier = "ci"', 'tier = "full"') + 'smoke_params = {}\n'
    write_ledger(project, full + entry("ci-proxy", 1.0, "reproduced"))
    result = project.runpytest_subprocess("claims", "-p", "no:cacheprovider", "--collect-only", "-q",
                                          "--strict-markers", "-m", "tier_full")
    assert sorted(line.split("::")[-1] for line in result.stdout.lines if "::" in line) == ["quoted"]


def test_a_bad_bundle_file_costs_the_report_one_line_not_the_session(project):
    write_ledger(project, entry("holds", 1.0, "reproduced"))
    (project.path / "results" / "cpu-full.json").write_text('{"format": "claims-harness-results/1"}')
    result = run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HTML report not written:*cpu-full.json*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
