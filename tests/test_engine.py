"""The engine: planner, executors (in process, process pool, Ray) and resuming after a kill.

Properties: entries that share a run share it; stored runs are never planned; every executor stores
byte-identical outputs for the same run identity; a worker that dies loses only its own run, which
stays pending; a killed session resumes with nothing lost.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from implementations.common.seeding import seed_everything, torch_generator
from verify.executors import PoolExecutor, RayExecutor, SequentialExecutor
from verify.ledger import load_ledger
from verify.planner import parallel_wall
from verify.runner import Runner
from verify.store import ResultsStore

REPO = Path(__file__).resolve().parent.parent

TOY = '''
import os, time

class Missing(FileNotFoundError):
    not_run = True

def measure(*, seed, device, data_dir, sleep=0.0, die_on=None):
    if seed == die_on:
        os._exit(3)  # a worker killed mid-run (OOM killer, segfault): no reply ever comes
    time.sleep(sleep)
    return {"x": seed * 0.1, "pid": 0}

def numpy_only(*, seed, device, data_dir):
    return {"x": seed * 0.1, "device_seen": device}

numpy_only.device_independent = True

def needs_file(*, seed, device, data_dir):
    raise Missing(f"dataset file {data_dir}/toy.bin is missing")

def broken(*, seed, device, data_dir):
    raise ValueError("protocol bug")

def with_context(*, context):
    import random, numpy, torch
    return {"x": context.seed * 0.1, "device_seen": context.device, "data_dir_seen": str(context.data_dir),
            "global_draws": [float(torch.rand(1)), float(numpy.random.rand()), random.random()],
            "batch_order": float(torch.rand(1, generator=context.torch_generator("batch order"))),
            "stream_3": float(context.numpy_generator(3).random())}

def context_and_seed(*, context, seed):
    return {"x": 0.0}
'''


def toy_entry(claim_id, protocol="toy_engine:measure", params="{}", seeds="[1, 2, 3]", extra=""):
    return f'''
[[claim]]
id = "{claim_id}"
system = "toy"
source = {{ repository = "someone/toy", file = "README.md", document = "toy.txt" }}
quote = "x is positive"
claimed = 0.0
comparison = "at_least"
kind = "exact"
tolerance = 0.0
tolerance_origin = "test"
metric = "value"
metric_args = {{ key = "x" }}
protocol = "{protocol}"
params = {params}
seeds = {seeds}
tier = "ci"
device = "any"
{extra}'''


@pytest.fixture
def toy(tmp_path, tmp_path_factory, monkeypatch):
    """A toy protocol module importable here and in spawned workers (through PYTHONPATH)."""
    (tmp_path / "toy_engine.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    # toy_engine may define protocols; the whole temporary tree, as an earlier test's import of it stays loaded.
    monkeypatch.setenv("CLAIMS_PROTOCOL_ROOTS", str(tmp_path_factory.getbasetemp()))
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "toy.txt").write_text("The toy README says x is positive.")
    monkeypatch.setenv("CLAIMS_SEEDS_DIR", str(tmp_path / "seeds"))

    def entries(text):
        path = tmp_path / "claims" / "toy" / "claims.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return load_ledger(path)
    return entries


def make_runner(path, **options):
    return Runner(ResultsStore(path), path.parent, progress=lambda message: None, threads=1, **options)


def test_entries_sharing_a_run_share_it_and_stored_runs_are_not_planned(tmp_path, toy):
    entries = toy(toy_entry("a") + toy_entry("b") + toy_entry("c", params="{ sleep = 0.0 }", seeds="[1, 4]"))
    runner = make_runner(tmp_path / "r.sqlite")
    plan = runner.plan(entries)
    # a and b read the same three runs; c's params differ (sleep given explicitly), so its runs are its own
    assert plan.pending_runs == 5 and plan.cached == 0
    assert plan.jobs[0].entries == ["a", "b"]
    runner.execute_plan(replace(plan, jobs=plan.jobs[:2]))
    after = runner.plan(entries)
    assert after.pending_runs == 3 and after.cached == 2
    fresh = make_runner(tmp_path / "r.sqlite").plan(entries)
    assert fresh.pending_runs == 3  # a new session sees the store, not the old session's memory


def test_no_cache_runs_each_unique_run_once(tmp_path, toy):
    entries = toy(toy_entry("a") + toy_entry("b"))
    runner = make_runner(tmp_path / "r.sqlite")
    runner.execute_plan(runner.plan(entries))
    again = make_runner(tmp_path / "r.sqlite", use_cache=False)
    plan = again.plan(entries)
    assert plan.pending_runs == 3  # not 6: b reads the runs a's re-execution makes
    again.execute_plan(plan)
    assert again.plan(entries).pending_runs == 0
    assert [again.evaluate(entry)["values"] for entry in entries] == [[0.1, 0.2, 0.30000000000000004]] * 2


def test_plan_points_at_runs_stored_under_another_thread_count(tmp_path, toy):
    entries = toy(toy_entry("a", seeds="[1, 2]"))
    one = make_runner(tmp_path / "r.sqlite")
    one.execute_plan(one.plan(entries))
    two = Runner(ResultsStore(tmp_path / "r.sqlite"), tmp_path, progress=lambda message: None, threads=2)
    plan = two.plan(entries)
    assert plan.pending_runs == 2 and plan.other_threads == {1: 2}
    assert "--threads 1 would reuse them" in plan.lines()[-1]
    assert one.plan(entries).other_threads == {}


def test_plan_says_when_pending_runs_are_stored_under_older_code(tmp_path, toy, monkeypatch):
    from verify import runner as runner_module

    monkeypatch.delitem(sys.modules, "toy_engine", raising=False)  # an earlier test's copy would be hashed
    runner_module.code_version.cache_clear()
    entries = toy(toy_entry("a", seeds="[1, 2]"))
    first = make_runner(tmp_path / "r.sqlite")
    first.execute_plan(first.plan(entries))
    assert first.plan(entries).older_code == {}
    module = tmp_path / "toy_engine.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    runner_module.code_version.cache_clear()
    try:
        plan = make_runner(tmp_path / "r.sqlite").plan(entries)
    finally:
        runner_module.code_version.cache_clear()
    assert plan.pending_runs == 2 and plan.older_code == {"toy_engine:measure": 2}
    assert plan.lines()[-1] == ("note: 2 pending run(s) are stored under other code of their protocol (measure): "
                                "the source they reach changed since, so they run again")


def test_estimates_come_from_stored_wall_times(tmp_path, toy):
    entries = toy(toy_entry("a", params="{ sleep = 0.2 }", seeds="[1]") + toy_entry("b", params="{ sleep = 0.2 }",
                                                                                    seeds="[1, 2]"))
    runner = make_runner(tmp_path / "r.sqlite")
    first = runner.plan(entries)
    assert [job.estimate for job in first.jobs] == [None, None]
    assert "unknown" in first.lines()[0]
    assert "estimated 2 job(s) of unknown length;" in first.lines()[-1]  # no "0.0s +" before it
    runner.execute_plan(replace(first, jobs=first.jobs[:1]))
    second = runner.plan(entries)
    (job,) = second.jobs
    assert job.estimate == pytest.approx(0.2, abs=0.15) and job.estimate_from_same_params
    other = toy(toy_entry("c", params="{ sleep = 0.3 }", seeds="[1]"))
    (guess,) = runner.plan(other).jobs
    assert guess.estimate == pytest.approx(0.2, abs=0.15) and not guess.estimate_from_same_params
    assert "(from one other parameter set)" in runner.plan(other).lines()[0]  # one other size: no spread to show
    assert "pending: 1 run(s)" in second.lines()[-1]


def test_a_new_store_estimates_from_the_reference_bundle_and_its_own_times_win(tmp_path, toy):
    entries = toy(toy_entry("a", params="{ sleep = 0.2 }", seeds="[1]"))
    runner = make_runner(tmp_path / "r.sqlite")
    (spec,) = runner.plan(entries).jobs[0].specs
    runner.reference_walls = [(spec.protocol, spec.params, spec.device, 42.0),  # this run, measured elsewhere
                              (spec.protocol, {"sleep": 9.0}, spec.device, 7.0),
                              (spec.protocol, spec.params, "cuda", 1.0)]  # another device: never used for CPU
    (job,) = runner.plan(entries).jobs
    assert job.estimate == 42.0 and job.estimate_from_reference and job.estimate_from_same_params
    assert "est. ~42.0s (reference bundle)" in runner.plan(entries).lines()[0]
    runner.execute_plan(runner.plan(entries))
    other = toy(toy_entry("b", params="{ sleep = 0.2 }", seeds="[2]"))
    (own,) = runner.plan(other).jobs  # this store has timed the run now: its own time wins
    assert own.estimate == pytest.approx(0.2, abs=0.15) and not own.estimate_from_reference


def test_plan_names_missing_inputs_and_leaves_them_out_of_the_estimate(tmp_path, toy):
    """A job whose dataset files are absent ends `not run` at once: the plan says which file and does
    not count it among the jobs of unknown length (a plan of CIFAR-100 rows promised hours)."""
    entries = toy(toy_entry("needs-mnist", seeds="[1, 2]", extra='datasets = ["mnist"]')
                  + toy_entry("needs-cifar10", params="{ sleep = 0.0 }", seeds="[1]", extra='datasets = ["cifar10"]'))
    data = tmp_path / "data"
    (data / "cifar10").mkdir(parents=True)
    (data / "cifar10" / "cifar10-repacked.npz").write_bytes(b"")  # stands for the official tarball
    runner = Runner(ResultsStore(tmp_path / "r.sqlite"), data, progress=lambda message: None, threads=1)
    plan = runner.plan(entries)
    assert [job.missing for job in plan.jobs] == [["mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz",
                                                   "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"]] * 2 + [[]]
    lines = plan.lines()
    assert "input missing: mnist/train-images-idx3-ubyte.gz +3 more (python -m verify fetch-data mnist)" in lines[0]
    assert "est. unknown" in lines[2]
    assert "estimated 1 job(s) of unknown length; 2 job(s) whose input is missing here end `not run` at once;" in lines[-1]
    (data / "mnist").mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (data / "mnist" / name).write_bytes(b"")  # presence is what the plan checks; the loader verifies
    assert [job.missing for job in runner.plan(entries).jobs] == [[], [], []]


def test_plan_knows_a_job_a_session_found_unrunnable_from_the_store_or_the_bundle(tmp_path, toy):
    """SGM's interference row cites a script that exists in no commit, and reads no dataset file to
    look for: every plan listed its 5 runs as "est. unknown". A stored "input missing" (this store's,
    or the reference bundle's) now marks such a job as ending `not run` at once."""
    entries = toy(toy_entry("a", seeds="[1]") + toy_entry("gone", protocol="toy_engine:needs_file", seeds="[1, 2]"))
    first = make_runner(tmp_path / "r.sqlite")
    assert [job.unavailable for job in first.plan(entries).jobs] == [None, None, None]
    for entry in entries:
        first.evaluate(entry)
    again = make_runner(tmp_path / "r.sqlite").plan(entries, longest_first=True)
    assert [job.specs[0].protocol for job in again.jobs] == ["toy_engine:needs_file"] * 2
    assert all(job.ends_not_run for job in again.jobs)
    lines = again.lines()
    assert lines[0].endswith(f"input missing (a stored `not run`): dataset file {tmp_path}/toy.bin is missing  (gone)")
    assert "estimated 0.0s; 2 job(s) whose input is missing here end `not run` at once;" in lines[-1]
    records = make_runner(tmp_path / "r.sqlite").store.inputs_missing()
    assert [record["claim_id"] for record in records] == ["gone"]
    fresh = make_runner(tmp_path / "fresh.sqlite", reference_inputs_missing=records).plan(entries)
    assert [job.unavailable is not None for job in fresh.jobs] == [False, True, True]
    other = make_runner(tmp_path / "other.sqlite", reference_inputs_missing=[dict(records[0], params={"n": 1})])
    assert not any(job.ends_not_run for job in other.plan(entries).jobs)  # other parameters: no knowledge


def test_failures_reach_the_entries_that_read_them(tmp_path, toy):
    entries = toy(toy_entry("missing", protocol="toy_engine:needs_file", seeds="[1]")
                  + toy_entry("bug", protocol="toy_engine:broken", seeds="[1]"))
    runner = make_runner(tmp_path / "r.sqlite")
    runner.execute_plan(runner.plan(entries), PoolExecutor(tmp_path, workers=2), workers=2)
    missing = runner.evaluate(entries[0])
    assert missing["verdict"] == "not run" and "toy.bin is missing" in missing["reason"]
    with pytest.raises(RuntimeError, match="ValueError: protocol bug"):
        runner.evaluate(entries[1])


@pytest.mark.parametrize("executor", ["sequential", "pool", "ray"])
def test_a_protocol_taking_a_run_context_gets_the_run_and_its_seeded_streams(tmp_path, toy, executor):
    """The context carries the run's seed, device and data directory; the engine seeded the global
    generators before the call, as for a protocol taking `seed, device, data_dir`; its streams are the
    contract's derivations (torch_generator(seed), default_rng([seed, stream]))."""
    entries = toy(toy_entry("a", protocol="toy_engine:with_context", seeds="[1, 2]"))
    runner = make_runner(tmp_path / "r.sqlite")
    plan = runner.plan(entries)
    if executor == "ray":
        pytest.importorskip("ray")
        runner.execute_plan(plan, RayExecutor(tmp_path, address=None, local_cpus=2), workers=2)
    elif executor == "pool":
        runner.execute_plan(plan, PoolExecutor(tmp_path, workers=2), workers=2)
    else:
        runner.execute_plan(plan, SequentialExecutor(tmp_path))
    assert not runner.failures
    for spec in (spec for job in plan.jobs for spec in job.specs):
        seed_everything(spec.seed)
        expected = {"x": spec.seed * 0.1, "device_seen": "cpu", "data_dir_seen": str(tmp_path),
                    "global_draws": [float(torch.rand(1)), float(np.random.rand()), random.random()],
                    "batch_order": float(torch.rand(1, generator=torch_generator(spec.seed))),
                    "stream_3": float(np.random.default_rng([spec.seed, 3]).random())}
        assert json.loads(runner.store.raw_outputs(spec.key)) == expected


def test_a_protocol_taking_context_and_seed_fails_with_one_line_saying_so(tmp_path, toy):
    entries = toy(toy_entry("a", protocol="toy_engine:context_and_seed", seeds="[1]"))
    runner = make_runner(tmp_path / "r.sqlite")
    runner.execute_plan(runner.plan(entries), SequentialExecutor(tmp_path))
    with pytest.raises(TypeError, match="takes `context` and `seed`: take `context` alone"):
        runner.evaluate(entries[0])


def small_real_entries():
    """Two cheap real protocols (numpy and torch) with the ledger's seeds cut short."""
    sgm = {entry.id: entry for entry in load_ledger(REPO / "claims" / "sgm" / "claims.toml")}
    quick = replace(sgm["sgm-quickstart-retention"], seeds=(1, 3, 5))
    return [quick]


def raw_outputs(runner, entries):
    plan = runner.plan(entries)
    keys = [spec.key for job in plan.jobs for spec in job.specs]
    return {key: runner.store.raw_outputs(key) for key in keys}, plan


@pytest.mark.parametrize("executor", ["pool", "ray"])
def test_executors_store_byte_identical_outputs(tmp_path, executor):
    entries = small_real_entries()
    sequential = make_runner(tmp_path / "sequential.sqlite")
    sequential.execute_plan(sequential.plan(entries), SequentialExecutor(tmp_path))
    parallel = make_runner(tmp_path / f"{executor}.sqlite")
    plan = parallel.plan(entries)
    assert plan.pending_runs == 3
    if executor == "ray":
        pytest.importorskip("ray")
        chosen = RayExecutor(tmp_path, address=None, local_cpus=2)
    else:
        chosen = PoolExecutor(tmp_path, workers=2)
    parallel.execute_plan(plan, chosen, workers=2)
    assert not parallel.failures
    keys = [spec.key for job in plan.jobs for spec in job.specs]
    expected = {key: sequential.store.raw_outputs(key) for key in keys}
    assert all(expected.values())
    assert {key: parallel.store.raw_outputs(key) for key in keys} == expected


@pytest.mark.parametrize("executor", ["pool", "ray"])
def test_a_dying_worker_loses_only_its_own_run(tmp_path, toy, executor):
    entries = toy(toy_entry("a", params="{ die_on = 2 }", seeds="[1, 2, 3, 4]"))
    runner = make_runner(tmp_path / "r.sqlite")
    if executor == "ray":
        pytest.importorskip("ray")
        chosen = RayExecutor(tmp_path, address=None, local_cpus=2)
    else:
        chosen = PoolExecutor(tmp_path, workers=2)
    runner.execute_plan(runner.plan(entries), chosen, workers=2)
    assert len(runner.failures) == 1
    (failure,) = runner.failures.values()
    assert "died" in str(failure) or "failed" in str(failure)
    after = make_runner(tmp_path / "r.sqlite").plan(entries)
    assert [spec.seed for job in after.jobs for spec in job.specs] == [2]


def test_plan_groups_seed_batched_protocols(tmp_path, toy):
    """The batched form is found in the `seed_batched` module beside the protocols (`FORMS`)."""
    package = tmp_path / "toy_batching"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "protocols.py").write_text(TOY)
    (package / "seed_batched.py").write_text(
        "from toy_batching.protocols import measure\n\n"
        "def measure_seeds(*, seeds, device, data_dir, **params):\n"
        "    return [measure(seed=seed, device=device, data_dir=data_dir, **params) for seed in seeds]\n\n"
        "FORMS = {'toy_batching.protocols:measure': measure_seeds}\n")
    protocol = "toy_batching.protocols:measure"
    entries = toy(toy_entry("a", protocol, seeds="[1, 2, 3]") + toy_entry("b", protocol, seeds="[3, 4]"))
    assert make_runner(tmp_path / "s.sqlite", seed_batching=True).plan(
        toy(toy_entry("a", seeds="[1, 2]"))).jobs[0].seed_batched is False  # a top-level module: no form
    batched = make_runner(tmp_path / "b.sqlite", seed_batching=True)
    plan = batched.plan(entries)
    (job,) = plan.jobs
    assert [spec.seed for spec in job.specs] == [1, 2, 3, 4] and job.seed_batched
    batched.execute_plan(plan)
    runs = batched.store.runs()
    assert sorted(run.seed for run in runs) == [1, 2, 3, 4] and all(run.seed_batched for run in runs)
    sequential = make_runner(tmp_path / "b.sqlite")
    # batched runs are their own identity: the sequential runner plans its runs anew
    assert sequential.plan(entries).pending_runs == 4
    assert {spec.key for job in sequential.plan(entries).jobs for spec in job.specs}.isdisjoint(
        {run.run_key for run in runs})


def test_device_independent_runs_are_shared_by_every_device(tmp_path, toy):
    entries = toy(toy_entry("numpy", protocol="toy_engine:numpy_only", seeds="[1, 2]"))
    cpu = make_runner(tmp_path / "r.sqlite")
    cpu.execute_plan(cpu.plan(entries))
    (run, _) = cpu.store.runs()
    assert run.device == "any" and run.outputs["device_seen"] == "cpu"
    gpu = make_runner(tmp_path / "r.sqlite")
    gpu.device, gpu.device_name = "cuda", "a GPU"  # planning only: no CUDA is touched
    assert gpu.plan(entries).pending_runs == 0
    record = cpu.evaluate(entries[0])
    assert record["device_independent"] and record["device"] == "cpu"


PYTEST_PROJECT_LEDGER = toy_entry("slow", params="{ sleep = 1.5 }", seeds="[1, 2, 3, 4, 5, 6]")


def test_killed_pool_session_resumes_with_nothing_lost(tmp_path, toy):
    """kill -9 the whole pytest session mid-run; the rerun executes only what had not finished."""
    project = tmp_path / "project"
    (project / "claims" / "toy").mkdir(parents=True)
    (project / "claims" / "toy" / "claims.toml").write_text(PYTEST_PROJECT_LEDGER)
    store = project / "r.sqlite"
    command = [sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "--workers", "2",
               "--threads", "1", "--results", str(store), "--data-dir", str(tmp_path)]
    session = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and stored == 0:
        time.sleep(0.2)
        if store.exists():
            with sqlite3.connect(store) as connection:
                try:
                    stored = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0
    os.killpg(session.pid, signal.SIGKILL)
    session.wait()
    assert 0 < stored < 6
    survived = {run.run_key: run for run in ResultsStore(store).runs()}
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    assert f"already stored: {len(survived)}" in done.stdout
    resumed = ResultsStore(store)
    assert len(resumed.runs()) == 6
    for key, run in survived.items():
        assert resumed.get_run(key) == run  # nothing rewritten
    reference = make_runner(tmp_path / "reference.sqlite")
    reference.execute_plan(reference.plan(load_ledger(project / "claims" / "toy" / "claims.toml")))
    assert {key: resumed.raw_outputs(key) for key in survived} == {
        key: reference.store.raw_outputs(key) for key in survived}
    assert sorted(run.run_key for run in reference.store.runs()) == sorted(run.run_key for run in resumed.runs())


def _alive_workers(parent: int) -> list[int]:
    """Pool workers (spawned interpreters) whose parent is `parent`, zombies left out."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _still_running(pids: list[int]) -> list[int]:
    running = []
    for pid in pids:
        try:
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.append(pid)
        except OSError:
            pass
    return running


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_their_session_is_killed(tmp_path, toy):
    """A session killed by SIGTERM (timeout, a scheduler) runs no cleanup: its workers must not go on
    computing as orphans (each job here would take a minute)."""
    project = tmp_path / "project"
    (project / "claims" / "toy").mkdir(parents=True)
    (project / "claims" / "toy" / "claims.toml").write_text(toy_entry("slow", params="{ sleep = 60.0 }", seeds="[1, 2]"))
    command = [sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "--workers", "2",
               "--threads", "1", "--results", str(project / "r.sqlite"), "--data-dir", str(tmp_path)]
    session = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = _alive_workers(session.pid)
        assert len(workers) == 2
        os.kill(session.pid, signal.SIGTERM)
        session.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _still_running(workers):
            time.sleep(0.2)
        assert _still_running(workers) == []
    finally:
        try:
            os.killpg(session.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_plan_option_prints_and_runs_nothing(tmp_path, toy):
    project = tmp_path / "project"
    (project / "claims" / "toy").mkdir(parents=True)
    (project / "claims" / "toy" / "claims.toml").write_text(PYTEST_PROJECT_LEDGER)
    store = project / "r.sqlite"
    done = subprocess.run([sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "--plan",
                           "--results", str(store), "--data-dir", str(tmp_path)], cwd=project, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "[1/6] measure seed 1 on cpu  est. unknown  (slow)" in done.stdout
    assert "pending: 6 run(s) in 6 job(s)" in done.stdout
    assert ResultsStore(store).runs() == []
    cli = subprocess.run([sys.executable, "-m", "verify", "plan", "claims", "--results", str(store)], cwd=project,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "pending: 6 run(s) in 6 job(s)" in cli.stdout
    if not torch.cuda.is_available():  # a GPU session is planned from a machine without one
        gpu = subprocess.run([sys.executable, "-m", "verify", "plan", "claims", "--device", "cuda", "--results",
                              str(store)], cwd=project, capture_output=True, text=True, timeout=300)
        assert gpu.returncode == 0, gpu.stderr
        assert "on cuda" in gpu.stdout and "planning for CUDA on a machine without it" in gpu.stderr


def test_bad_engine_options_are_one_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "claims", "--workers", "0", "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--workers must be a positive number or 'auto', got '0'" in done.stderr
    assert "Traceback" not in done.stderr


def test_progress_takes_its_pace_from_runs_that_ran_not_from_refusals():
    """Jobs refused at once (a missing input) finish in no time; a pace drawn from them promised a
    95-run CPU session in a minute."""
    from verify.executors import Progress
    from verify.planner import Job, RunSpec

    jobs = [Job([RunSpec(f"p{i}", {}, 0, "cpu", "t", "c", 1)]) for i in range(4)]
    lines: list[str] = []
    progress = Progress(jobs, workers=2, write=lines.append)
    progress.done(jobs[0], "not run: weights absent")
    assert lines[-1].endswith("(3 left, time unknown until a run finishes)")
    progress.done(jobs[1], "done", 12.0)
    assert lines[-1].endswith("(2 run(s) of unknown length left)")  # no pace: nothing says they are alike
    progress.done(jobs[2], "done", 12.0)
    progress.done(jobs[3], "done", 12.0)
    assert "all done in" in lines[-1]


def test_the_time_left_learns_from_finished_runs_of_the_same_group_not_from_the_pace(monkeypatch):
    """SGM's full session on a fresh store: 20 runs of a few seconds finished first, and "at this pace"
    (the mean of all finished runs) promised 3 minutes with five 4-minute runs and an hour of
    CIFAR-10 to go. A finished run times the pending runs of its own protocol and parameters; runs of
    a group none of which has finished are counted as of unknown length, never guessed."""
    from verify import executors
    from verify.executors import Progress
    from verify.planner import Job, RunSpec

    quick = [Job([RunSpec("q", {}, seed, "cpu", "t", "c", 1)]) for seed in range(4)]
    long = [Job([RunSpec("p", {"n": 1}, seed, "cpu", "t", "c", 1)]) for seed in range(2)]
    other = Job([RunSpec("p", {"n": 2}, 0, "cpu", "t", "c", 1)])  # other parameters: not timed by p n=1
    clock = [0.0]
    monkeypatch.setattr(executors.time, "perf_counter", lambda: clock[0])
    lines: list[str] = []
    progress = Progress([*quick, *long, other], workers=1, write=lines.append)
    clock[0] += 2.0
    progress.done(quick[0], "done", 2.0)
    assert lines[-1].endswith("(~6.0s left + 3 run(s) of unknown length)")
    for job in quick[1:]:
        clock[0] += 2.0
        progress.done(job, "done", 2.0)
    assert lines[-1].endswith("(3 run(s) of unknown length left)")
    assert progress.still_running().endswith("(3 run(s) of unknown length left)")
    clock[0] += 600.0
    progress.done(long[0], "done", 600.0)
    assert lines[-1].endswith("(~10m00s left + 1 run(s) of unknown length)")
    clock[0] += 60.0
    assert progress.still_running().endswith("(~9m00s left + 1 run(s) of unknown length)")


def test_progress_counts_jobs_whose_input_is_missing_as_no_time():
    from types import SimpleNamespace

    from verify.executors import Progress
    from verify.planner import Job

    spec = SimpleNamespace(describe=lambda: "run")
    jobs = [Job([spec], missing=["cifar100/cifar-100-python.tar.gz"]), Job([spec], estimate=60.0), Job([spec], estimate=60.0)]
    lines: list[str] = []
    progress = Progress(jobs, workers=1, write=lines.append)
    progress.done(jobs[0], "not run: cifar100/cifar-100-python.tar.gz is missing")
    assert lines[-1].endswith("(~2m00s left)")


@given(st.lists(st.floats(min_value=0.0, max_value=1e5, allow_nan=False), max_size=12), st.integers(1, 6))
def test_wall_time_on_workers_is_a_real_schedule_of_the_jobs(seconds, workers):
    """Sum/workers promised 3 runs of 42 min on 2 workers in 63 min; no schedule does better than 84.
    The estimate is the longest worker's load when each job (longest first) goes to the least loaded
    worker: never below the longest job or an even share, never above Graham's bound for that rule."""
    wall = parallel_wall(seconds, workers)
    total = sum(seconds)
    assert wall >= max(seconds, default=0.0) - 1e-9 and wall >= total / workers - 1e-6 * max(total, 1.0)
    assert wall <= total / workers + max(seconds, default=0.0) * (1 - 1 / workers) + 1e-6 * max(total, 1.0)
    if workers == 1 or len(seconds) <= workers:
        assert wall == pytest.approx(max(seconds, default=0.0) if workers >= len(seconds) else total)


def test_plan_and_progress_give_the_wall_time_of_a_schedule(tmp_path, toy):
    assert parallel_wall([42.0, 42.0, 42.0], 2) == 84.0
    from types import SimpleNamespace

    from verify.executors import Progress
    from verify.planner import Job, Plan

    spec = SimpleNamespace(describe=lambda: "run", protocol="p")
    jobs = [Job([spec], estimate=2520.0, estimate_from_same_params=True) for _ in range(3)]
    plan = Plan(jobs, cached=0, skipped={})
    assert "estimated 2h06m, about 1h24m of wall time on 2 workers;" in plan.lines(workers=2)[-1]
    lines: list[str] = []
    progress = Progress(jobs + [Job([spec], estimate=2520.0)], workers=2, write=lines.append)
    progress.done(jobs[0], "done", 2520.0)
    assert lines[-1].endswith("(~1h24m left)")


def test_a_smoke_plan_takes_no_estimate_from_full_size_runs_of_other_parameters(tmp_path, toy):
    """The reference bundle holds full-profile runs: a smoke run's parameters differ, and the
    protocol's full-size time promised a 6-minute smoke suite 2h34m. Its own store's times, and
    reference runs with the very same parameters, still count."""
    entries = toy(toy_entry("a", params="{ sleep = 0.2 }", seeds="[1]"))
    runner = make_runner(tmp_path / "r.sqlite", profile="smoke")
    (spec,) = runner.plan(entries).jobs[0].specs
    runner.reference_walls = [(spec.protocol, {"sleep": 9.0}, spec.device, 7.0)]
    assert runner.plan(entries).jobs[0].estimate is None
    runner.reference_walls.append((spec.protocol, spec.params, spec.device, 42.0))
    assert runner.plan(entries).jobs[0].estimate == 42.0
    full = make_runner(tmp_path / "f.sqlite", profile="full", reference_walls=runner.reference_walls[:1])
    assert full.plan(entries).jobs[0].estimate == 7.0  # a full-size run of other parameters: a rough guide


def test_an_estimate_from_other_parameters_shows_how_far_they_spread():
    """A protocol run at several sizes (CI-sized 40 s, full-size 1h08m): the mean of its runs of other
    parameters says little, so the plan line gives the range of those parameters' times beside it."""
    from verify.planner import RunSpec, WallTimes

    walls = WallTimes([("p", '{"n": 1}', "cpu", 30.0), ("p", '{"n": 1}', "cpu", 50.0), ("p", '{"n": 2}', "cpu", 4080.0)])
    spec = RunSpec("p", {"n": 3}, 0, "cpu", "t", "c", 1)
    assert walls.estimate(spec) == ((30.0 + 50.0 + 4080.0) / 3, False, False, False)
    assert walls.spread(spec) == (40.0, 4080.0, 2)  # per-parameter means, lowest and highest, how many sets
    assert walls.spread(RunSpec("p", {"n": 1}, 0, "cpu", "t", "c", 1)) is None  # same parameters: no spread
    from types import SimpleNamespace

    from verify.planner import Job, Plan

    job = Job([SimpleNamespace(describe=lambda: "p seed 0 on cpu")], estimate=1386.7, spread=(40.0, 4080.0, 3))
    assert "est. ~23m07s (from other parameters: 40.0s to 1h08m)" in Plan([job], 0, {}).lines()[0]
    job = Job([SimpleNamespace(describe=lambda: "p seed 0 on cpu")], estimate=28.0, spread=(28.0, 28.0, 1))
    lines = Plan([job], 0, {}).lines()
    assert "est. ~28.0s (from one other parameter set)" in lines[0]
    # the total says so too: the learning-rate search's five full runs summed to "2m20s", each about an hour
    assert lines[-1].startswith("note: 1 job(s) are estimated from runs of other parameters of their protocol")


@pytest.mark.parametrize("workers, threads, cores, load, expected", [
    (1, 1, 2, 0.0, None),
    (2, 1, 2, 5.0, None),  # one thread per run never spins
    (2, 2, 2, 0.0, "2 worker(s) x 2 thread(s) per run = 4 threads on 2 CPU core(s)"),
    (1, 2, 2, 2.2, "about 1 other busy process(es) share the 2 CPU core(s)"),
    (1, 2, 2, 1.4, None),  # the load is this process's own
    (1, 2, 8, 4.0, None),
])
def test_oversubscribed_cpus_are_named_before_runs_start(workers, threads, cores, load, expected):
    """A --workers 1 session inherited 2 threads on 2 cores already busy with 1-thread runs: OpenMP
    spin-waiting made a 12 s run take 2-8 minutes. The engine says so before it starts."""
    from verify.executors import cpu_oversubscription

    note = cpu_oversubscription(workers, threads, cores=cores, load=load)
    if expected is None:
        assert note is None
    else:
        assert note.startswith("note: ") and expected in note and "--threads" in note


def test_long_runs_say_they_are_still_running():
    """A full-size run takes hours on a CPU: without a line between finished runs a session looks hung.
    While the executor runs, a line comes whenever `heartbeat` seconds pass without one."""
    from types import SimpleNamespace

    from verify.executors import Progress
    from verify.planner import Job

    spec = SimpleNamespace(describe=lambda: "run", protocol="p")
    jobs = [Job([spec], estimate=3600.0), Job([spec], estimate=3600.0)]
    lines: list[str] = []
    progress = Progress(jobs, workers=2, write=lines.append, heartbeat=0.2)
    with progress.beating():
        time.sleep(0.5)
        progress.done(jobs[0], "done", 3600.0)
        time.sleep(0.1)
    beats = [line for line in lines if "still running" in line]
    assert beats and beats[0].startswith("[0/2] still running after ") and "~1h00m left" in beats[0]
    assert lines[-1].startswith("[1/2] run: done")  # a finished run's line resets the wait: no beat right after it
    lines.clear()
    time.sleep(0.4)
    assert lines == []  # no beats outside the executor's run


def test_a_seed_batched_job_timed_from_one_seed_at_a_time_says_so():
    """On a GPU five batched seeds take about the time of one: a batched job's estimate summed from
    sequential runs is a ceiling, and the plan says where it came from; runs of its own form win."""
    from verify.planner import Job, Plan, RunSpec, WallTimes

    batched = RunSpec("p", {"n": 1}, 0, "cuda", "t", "c", 1, seed_batched=True)
    walls = WallTimes([("p", '{"n": 1}', "cuda", 100.0, False)])
    assert walls.estimate(batched) == (100.0, True, False, True)
    assert walls.estimate(RunSpec("p", {"n": 1}, 0, "cuda", "t", "c", 1)) == (100.0, True, False, False)
    walls = WallTimes([("p", '{"n": 1}', "cuda", 100.0, False), ("p", '{"n": 1}', "cuda", 24.0, True)])
    assert walls.estimate(batched) == (24.0, True, False, False)
    job = Job([batched], estimate=500.0, estimate_from_same_params=True, estimate_from_other_form=True)
    assert "est. ~8m20s (from runs one seed at a time)" in Plan([job], 0, {}).lines()[0]
    job.estimate_from_reference = True
    assert "est. ~8m20s (reference bundle, from runs one seed at a time)" in Plan([job], 0, {}).lines()[0]


def test_the_time_left_counts_what_running_jobs_have_done(monkeypatch):
    """Two 2h06m seeds side by side: when the first finished after 2h01m, the line said "~2h06m left"
    as if its twin had not started; it had a few minutes to go."""
    from types import SimpleNamespace

    from verify import executors
    from verify.executors import Progress
    from verify.planner import Job

    clock = [1000.0]
    monkeypatch.setattr(executors.time, "perf_counter", lambda: clock[0])
    spec = SimpleNamespace(describe=lambda: "run")
    jobs = [Job([spec], estimate=7560.0) for _ in range(3)]
    lines: list[str] = []
    progress = Progress(jobs, workers=2, write=lines.append)
    clock[0] += 7260.0
    progress.done(jobs[0], "done", 7260.0)  # jobs[1] has run 7260 s of its 7560; jobs[2] starts now
    assert lines[-1].endswith("(~2h06m left)")  # the third job's whole estimate, from now
    clock[0] += 7000.0
    progress.done(jobs[1], "done", 14260.0)  # ran long: nothing is added for it
    assert lines[-1].endswith("(~9m20s left)")  # 7560 - 7000 of the third job
    assert "~9m20s left" in progress.still_running()
    clock[0] += 600.0
    assert "running past the estimate" in progress.still_running()
    two = [Job([spec], estimate=7560.0) for _ in range(2)]
    progress = Progress(two, workers=2, write=lines.append)
    clock[0] += 7260.0
    progress.done(two[0], "done", 7260.0)
    assert lines[-1].endswith("(~5m00s left)")
