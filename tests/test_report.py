"""The HTML report: CPU and CUDA side by side, merged exports, rebuilt tables, escaping, speed.

The fixtures under tests/fixtures/ are small results exports: `results-cpu.json` (real SGM records
plus hand-made DTG-MA ones) and `results-cuda.json` (hand-made CUDA results of the same claims,
two of which reach a different verdict than on CPU).
"""

import copy
import json
import re
import time
from pathlib import Path

import pytest

from verify import cli, plots, report
from verify.store import ResultsStore, read_export

FIXTURES = Path(__file__).parent / "fixtures"
CPU_EXPORT = FIXTURES / "results-cpu.json"
CUDA_EXPORT = FIXTURES / "results-cuda.json"


def claim_row(html: str, claim_id: str) -> str:
    """The markup of one row of the claims table."""
    match = re.search(rf'<tr class="entry [^"]*" id="row-{re.escape(claim_id)}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {claim_id}"
    return match.group(1)


def badges(row: str) -> list[str]:
    return re.findall(r'<span class="badge [a-z-]+" title="[^"]*">([^<]+)</span>', row)


@pytest.fixture(scope="module")
def cpu_and_cuda_html(tmp_path_factory) -> str:
    """A report built from CPU records (a results store) and the CUDA fixture export."""
    cpu = read_export(CPU_EXPORT)
    store = ResultsStore(tmp_path_factory.mktemp("store") / "results.sqlite")
    store.import_json(CPU_EXPORT)
    cuda = read_export(CUDA_EXPORT)
    path = report.write_report([*store.verdicts(), *cuda["verdicts"]], [*store.runs(), *cuda["runs"]],
                               tmp_path_factory.mktemp("report") / "index.html")
    assert len(store.verdicts()) == len(cpu["verdicts"])
    return path.read_text(encoding="utf-8")


def test_cpu_and_cuda_columns_side_by_side(cpu_and_cuda_html):
    html = cpu_and_cuda_html
    assert "measured on CPU" in html and "measured on CUDA" in html
    row = claim_row(html, "dtgma-split-mnist-accuracy")
    assert "98.82" in row and "98.8367" in row  # the CPU mean, then the CUDA mean
    assert badges(row) == ["reproduced", "reproduced"]
    assert "CPU ≠ CUDA" not in row


def test_differing_verdicts_are_flagged(cpu_and_cuda_html):
    html = cpu_and_cuda_html
    row = claim_row(html, "dtgma-split-mnist-ewc-forgetting")
    assert badges(row) == ["inconclusive", "reproduced"]
    assert "CPU ≠ CUDA" in row
    assert "v-differ" in re.search(r'<tr class="([^"]*)" id="row-dtgma-split-mnist-ewc-forgetting"', html).group(1)
    assert badges(claim_row(html, "sgm-quickstart-retention")) == ["inconclusive", "not reproduced (above)"]
    assert "2 entries where CPU and CUDA verdicts differ" in html
    # Not run on both devices is no disagreement; neither is a finding measured on CPU only.
    assert "CPU ≠ CUDA" not in claim_row(html, "dtgma-cifar100-accuracy")
    assert "CPU ≠ CUDA" not in claim_row(html, "sgm-quickstart-locked-total")


def test_system_index_counts_verdicts_per_device(cpu_and_cuda_html):
    row = re.search(r'<tr class="system-row" id="system-dtgma">(.*?)</tr>', cpu_and_cuda_html, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(\d+)</td>", row)
    # claims, findings, then (cpu, cuda) per verdict: reproduced, not reproduced, inconclusive, measured,
    # full protocol pending, input missing (the CIFAR-100 file)
    assert cells == ["4", "1", "1", "2", "1", "1", "1", "0", "0", "0", "0", "0", "1", "1"]
    assert 'href="#claims-dtgma"' in row and 'id="claims-dtgma"' in cpu_and_cuda_html


def test_claim_section_shows_evidence(cpu_and_cuda_html):
    html = cpu_and_cuda_html
    start = html.index('id="claim-dtgma-split-mnist-ewc-accuracy"')
    section = html[start:html.index('id="claim-dtgma-split-mnist-ewc-forgetting"')]
    assert "EWC 74.7 / 28.2" in section
    assert "Fisher from the first 200 samples" in section  # the recorded deviation
    assert section.count('<svg class="dot-plot"') == 1
    assert section.count("<circle") == 6  # three seeds on each device
    assert section.count('<table class="heatmap">') >= 2  # the mean accuracy matrix per device
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in section  # a dataset checksum
    assert "NVIDIA H100 80GB HBM3" in section and "2.13.0+cu128" in section
    # The forgetting claim runs the same EWC runs: their matrices are linked, not drawn again.
    later = html[html.index('id="claim-dtgma-split-mnist-ewc-forgetting"'):]
    assert 'are shown under <a href="#claim-dtgma-split-mnist-ewc-accuracy">' in later.split("</article>")[0]


def test_findings_sit_under_their_claim(cpu_and_cuda_html):
    html = cpu_and_cuda_html
    claim = html.index('<article class="claim-detail claim" id="claim-sgm-quickstart-retention"')
    finding = html.index('<section class="finding" id="claim-sgm-quickstart-readme-run"')
    assert claim < finding < html.index("</article>", claim)
    assert ">1.09037<" in html  # the finding's own per-seed value (6 significant digits; every digit in the exports)


def test_source_table_rebuilt_with_claimed_beside_measured(cpu_and_cuda_html):
    html = cpu_and_cuda_html
    table = html[html.index('<section id="tables">'):html.index('<section id="details">')]
    assert "Split MNIST: accuracy and forgetting (EXPERIMENT_RESULTS.md)" in table
    assert table.index("<th>DTG-MA</th>") < table.index("<th>EWC</th>")
    assert "<th>accuracy (%)</th>" in table and "<th>forgetting (%)</th>" in table
    ewc_accuracy = table[table.index("74.7 ± 0.5"):]
    claimed_then_cpu = (r'74\.7 ± 0\.5</span>\s*<span class="measured-value">.*?'
                        r'62\.3667 <span class="delta not-reproduced"[^>]*>-12\.3<')
    assert re.match(claimed_then_cpu, ewc_accuracy, re.S)


def test_cli_merges_store_and_exports(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.sqlite")
    store.import_json(CPU_EXPORT)
    out = tmp_path / "report" / "index.html"
    assert cli.main(["report", "--results", str(store.path), "--merge", str(CUDA_EXPORT), "--out", str(out),
                     "--no-bundle"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert badges(claim_row(html, "sgm-quickstart-retention")) == ["inconclusive", "not reproduced (above)"]
    only_exports = tmp_path / "exports.html"
    assert cli.main(["report", "--results", str(tmp_path / "absent.sqlite"), "--merge", str(CPU_EXPORT), str(CUDA_EXPORT),
                     "--out", str(only_exports), "--no-bundle"]) == 0
    assert "CPU ≠ CUDA" in claim_row(only_exports.read_text(encoding="utf-8"), "dtgma-split-mnist-ewc-forgetting")


def test_the_bundle_is_merged_by_default_and_other_code_is_shown_stale(tmp_path, capsys):
    bundle = tmp_path / "results"
    bundle.mkdir()
    (bundle / "cpu-full.json").write_bytes(CPU_EXPORT.read_bytes())  # recorded by older code: every verdict stale
    out = tmp_path / "index.html"
    assert cli.main(["report", "--results", str(tmp_path / "absent.sqlite"), "--bundle", str(bundle),
                     "--out", str(out)]) == 0
    row = claim_row(out.read_text(encoding="utf-8"), "dtgma-split-mnist-accuracy")
    assert badges(row)[0] == "reproduced" and 'class="stale"' in row
    assert cli.main(["report", "--results", str(tmp_path / "absent.sqlite"), "--bundle", str(bundle), "--no-bundle",
                     "--out", str(out)]) == 2


def test_report_is_self_contained(cpu_and_cuda_html):
    html = cpu_and_cuda_html
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"\ssrc=", html)
    external = re.findall(r'href="(https?://[^"]*)"', html)
    assert external and all(link.startswith("https://github.com/") for link in external)  # source links, not assets


def test_verdicts_without_runs_still_render(tmp_path):
    records = read_export(CPU_EXPORT)["verdicts"]
    html = report.write_report(records, [], tmp_path / "index.html").read_text(encoding="utf-8")
    assert badges(claim_row(html, "dtgma-split-mnist-accuracy"))[0] == "reproduced"
    assert "0 of 3 in these results" in html
    assert '<table class="heatmap">' not in html


def hostile_records() -> list[dict]:
    record = copy.deepcopy(next(r for r in read_export(CPU_EXPORT)["verdicts"] if r["claim_id"] == "dtgma-split-mnist-accuracy"))
    record.update({
        "quote": "<script>alert('quote')</script> 98.9%",
        "title": "<b onmouseover=alert(1)>title</b>",
        "system": "<i>sys</i>",
        "device": "<svg onload=alert(2)>",
        "deviation": "</dd><script>alert(3)</script>",
        "table": {"name": "<img src=x onerror=alert(4)>", "row": "<u>row</u>", "column": "<s>col</s>"},
        "source": {"repository": "javascript:alert(5)//x", "file": "<a href=evil>f</a>", "document": None},
        "params": {"<k>": "</code><script>"},
    })
    return [record]


def test_text_from_ledgers_and_results_is_escaped(tmp_path):
    html = report.write_report(hostile_records(), [], tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;quote&#39;)&lt;/script&gt; 98.9%" in html
    assert "<b onmouseover" not in html and "&lt;b onmouseover=alert(1)&gt;title&lt;/b&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(4)&gt;" in html
    assert "<svg onload" not in html and "&lt;svg onload=alert(2)&gt;" in html  # also the label inside the dot plot
    assert 'href="javascript:' not in html and "<a href=evil>" not in html


def test_report_of_150_claims_is_fast(tmp_path):
    cpu = read_export(CPU_EXPORT)
    template = next(r for r in cpu["verdicts"] if r["claim_id"] == "dtgma-split-mnist-accuracy")
    runs = {run["run_key"]: run for run in cpu["runs"]}
    records, all_runs = [], []
    for index in range(150):
        for device in ("cpu", "cuda"):
            record = copy.deepcopy(template)
            record.update({"claim_id": f"claim-{index:03d}", "device": device, "system": f"system-{index % 5}",
                           "run_keys": [f"{key}-{index}-{device}" for key in template["run_keys"]],
                           "table": {"name": f"table {index % 5}", "row": f"row {index // 10}", "column": f"col {index % 10}"}})
            records.append(record)
            for key in template["run_keys"]:
                all_runs.append({**runs[key], "run_key": f"{key}-{index}-{device}", "device": device})
    started = time.perf_counter()
    html = report.write_report(records, all_runs, tmp_path / "index.html").read_text(encoding="utf-8")
    elapsed = time.perf_counter() - started
    assert html.count('<tr class="entry claim') == 150
    assert elapsed < 10, f"report of 150 claims took {elapsed:.1f}s"


def test_dot_plot_draws_every_seed_band_and_interval():
    series = [plots.SeedSeries("cpu", [1, 2, 3], [0.97, 0.98, 0.99], 0.98, (0.955, 1.005))]
    svg = str(plots.dot_plot(series, 0.98, "equal", 0.01))
    assert svg.count("<circle") == 3 and "seed 2: 0.98" in svg
    assert "<title>tolerance band</title>" in svg and "claimed 0.98" in svg and "95% interval [0.955, 1.005]" in svg
    assert plots.dot_plot([plots.SeedSeries("cpu", [], [], None, None)], 1.0, "equal", 0.0) == ""


def test_tolerance_band_stays_visible_when_tiny():
    series = [plots.SeedSeries("cpu", [1, 2], [1.0, 1.1], 1.05, (0.4, 1.7))]
    svg = str(plots.dot_plot(series, 1.0, "equal", 5e-5))
    band_width = float(re.search(r'<rect x="[^"]+" y="[^"]+" width="([^"]+)"', svg).group(1))
    assert band_width >= plots.MIN_BAND_PIXELS


def test_heatmap_block_averages_large_matrices():
    large = [[(i + j) % 2 * 1.0 for j in range(1000)] for i in range(1000)]
    table = str(plots.heatmap(large))
    assert table.count("<td") == plots.HEATMAP_MAX_CELLS ** 2
    assert "after 0-24, task 25-49: 0.5" in table  # a block's mean, named by its rows and columns
    small = str(plots.heatmap([[0.5, None], [0.25, 0.75]]))
    assert small.count("<tr>") == 3 and small.count("<td") == 4  # a header row, then one row per task
    assert "no value" in small and ">0.75<" in small
    assert f'style="background:{plots._hex(plots._viridis(0.75))}">0.75<' in small


def test_nice_ticks_cover_the_range():
    ticks, decimals = plots.nice_ticks(1.08995, 1.09085)
    assert ticks[0] >= 1.08995 and ticks[-1] <= 1.09085 and len(ticks) >= 3
    assert len({f"{t:.{decimals}f}" for t in ticks}) == len(ticks)


def test_device_independent_entry_is_shown_once(tmp_path):
    """CPU and CUDA verdicts read the same device-independent runs: one cell, labelled."""
    cpu = read_export(CPU_EXPORT)
    record = copy.deepcopy(next(r for r in cpu["verdicts"] if r["claim_id"] == "sgm-quickstart-retention"))
    record["device_independent"] = True
    on_cuda = {**copy.deepcopy(record), "device": "cuda", "device_name": "a GPU"}
    html = report.write_report([record, on_cuda], cpu["runs"], tmp_path / "index.html").read_text(encoding="utf-8")
    assert len(badges(claim_row(html, "sgm-quickstart-retention"))) == 1
    assert "device-independent: run once, valid for every device" in html
    separate = {**on_cuda, "device_independent": False}
    html = report.write_report([record, separate], cpu["runs"], tmp_path / "two.html").read_text(encoding="utf-8")
    assert len(badges(claim_row(html, "sgm-quickstart-retention"))) == 2


def test_a_pending_full_protocol_shows_no_measured_number():
    from verify.report import render_report

    base = json.loads((Path(__file__).parent / "fixtures" / "results-cpu.json").read_text())["verdicts"][0]
    record = {**base, "claim_id": "pending-claim", "kind": "claim", "of": None, "verdict": "not run",
              "not_run": "full protocol pending", "direction": None, "values": [], "mean": None, "interval": None,
              "reason": "full protocol pending: tier 'full' ran at smoke size only here", "claimed": 0.5,
              "comparison": "equal", "tolerance": 0.01, "claim_kind": "single_run", "prediction_interval": None}
    html = render_report([record], [])
    row = claim_row(html, "pending-claim")
    assert "full protocol pending" in row
    numbers = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
    assert numbers[0] == "0.5 ± 0.01" and set(numbers[1:]) <= {"–", ""}, numbers  # claimed, then no measurement


def test_numbers_that_differ_beyond_tolerance_and_both_intervals_are_flagged():
    cpu = {r["claim_id"]: r for r in read_export(CPU_EXPORT)["verdicts"]}
    cuda = {r["claim_id"]: r for r in read_export(CUDA_EXPORT)["verdicts"]}
    claim_id = next(c for c in cpu if c in cuda and cpu[c]["mean"] is not None and cuda[c]["verdict"] != "not run")
    base = dict(cpu[claim_id], tolerance=0.01, mean=0.50, interval=[0.49, 0.51])

    def view(mean, interval):
        other = dict(base, device="cuda", mean=mean, interval=interval, created=base["created"])
        return report._entry_views([base, other], {})[claim_id]
    assert view(0.60, [0.59, 0.61]).numbers_differ  # 0.1 apart, intervals apart
    assert not view(0.505, [0.495, 0.515]).numbers_differ  # within the tolerance
    assert not view(0.60, [0.40, 0.80]).numbers_differ  # intervals overlap: chance can explain it
    # A clock reading differs between devices by design: never flagged, labelled instead.
    timed = dict(base, metric="ratio", metric_args={"key": "anastrophic_step_seconds", "over": "l2_step_seconds"})
    far = dict(timed, device="cuda", mean=0.60, interval=[0.59, 0.61], created=base["created"])
    entry = report._entry_views([timed, far], {})[claim_id]
    assert entry.timing and not entry.numbers_differ
    html = report.render_report([timed, far], [])
    assert "timing, device-dependent" in claim_row(html, claim_id) and "numbers differ" not in claim_row(html, claim_id)


def test_a_device_without_records_gets_no_column_and_the_lede_says_so():
    cpu = read_export(CPU_EXPORT)
    html = report.render_report(cpu["verdicts"], cpu["runs"])
    assert "measured on CPU" in html and "measured on CUDA" not in html
    assert "No CUDA results in this report, so it has no column." in html
    cuda = read_export(CUDA_EXPORT)
    html = report.render_report(cuda["verdicts"], cuda["runs"])
    assert "measured on CUDA" in html and "measured on CPU" not in html and "No CPU results" in html


def test_merged_results_from_different_torch_versions_or_commits_warn_at_the_top(cpu_and_cuda_html):
    cpu = read_export(CPU_EXPORT)
    commit = cpu["verdicts"][0]["environment"]["git_commit"]
    same = [r for r in cpu["verdicts"] if r["environment"]["git_commit"] == commit]
    assert 'class="mixed-warning"' not in report.render_report(same, cpu["runs"])
    assert "2 commits (" in report.render_report(cpu["verdicts"], cpu["runs"])  # the fixture spans two
    top = cpu_and_cuda_html[:cpu_and_cuda_html.index('<nav class="contents">')]
    torch_versions = sorted({r["torch_version"] for r in [*cpu["verdicts"], *read_export(CUDA_EXPORT)["verdicts"]]
                             if r["verdict"] != "not run"})
    assert len(torch_versions) == 2  # the fixtures: 2.13.0+cpu and 2.13.0+cu128
    assert f"2 torch versions ({', '.join(torch_versions)})" in top
