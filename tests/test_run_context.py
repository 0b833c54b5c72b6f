"""The run context: its streams are the contract's derivations (docs/CONTRACTS.md, "Seeding"), so a
system moving onto it keeps its numbers; how the engine picks a protocol's calling convention."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from implementations.common.run_context import RunContext, call_protocol, takes_context
from implementations.common.seeding import torch_generator

seeds = st.integers(min_value=0, max_value=2**31 - 1)


@given(seed=seeds, offset=st.integers(min_value=0, max_value=10))
def test_torch_streams_start_at_the_seed_plus_their_offset_whatever_their_name(seed, offset):
    context = RunContext(seed, "cpu", Path("."))
    drawn = torch.rand(3, generator=context.torch_generator("batch order", seed_offset=offset))
    assert torch.equal(drawn, torch.rand(3, generator=torch_generator(seed + offset)))
    again = torch.rand(3, generator=context.torch_generator("permutation", seed_offset=offset))
    assert torch.equal(drawn, again)  # a fresh generator each call: one user's draws never shift another's


@given(seed=seeds, stream=st.integers(min_value=0, max_value=100))
def test_numpy_streams_are_default_rng_of_seed_and_stream(seed, stream):
    context = RunContext(seed, "cpu", Path("."))
    assert np.array_equal(context.numpy_generator(stream).random(3),
                          np.random.default_rng([seed, stream]).random(3))


@given(seed=seeds, n=st.integers(min_value=1, max_value=4))
def test_spawned_children_take_seedsequence_seeds_and_keep_device_and_data(seed, n):
    context = RunContext(seed, "cuda", Path("/data"))
    children = context.spawn(n)
    expected = [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]
    assert [child.seed for child in children] == expected
    assert {(child.device, child.data_dir) for child in children} == {("cuda", Path("/data"))}
    assert context.spawn(n) == children


def test_reseed_seeds_the_global_generators_at_the_run_seed():
    context = RunContext(7, "cpu", Path("."))
    context.reseed()
    first = (float(torch.rand(1)), float(np.random.rand()))
    torch.rand(5)
    context.reseed()
    assert (float(torch.rand(1)), float(np.random.rand())) == first


def test_the_context_cannot_be_changed_by_a_protocol():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunContext(1, "cpu", Path(".")).seed = 2


def test_the_engine_calls_each_protocol_in_the_convention_its_signature_names():
    def spelled_out(*, seed, device, data_dir, scale=1):
        return {"seed": seed * scale, "device": device, "data_dir": str(data_dir)}

    def with_context(*, context, scale=1):
        return {"seed": context.seed * scale, "device": context.device, "data_dir": str(context.data_dir)}

    context = RunContext(3, "cpu", Path("/d"))
    assert not takes_context(spelled_out) and takes_context(with_context)
    assert call_protocol(spelled_out, context, scale=2) == call_protocol(with_context, context, scale=2) == {
        "seed": 6, "device": "cpu", "data_dir": "/d"}


def test_a_protocol_taking_both_conventions_is_refused_naming_what_to_drop():
    def both(*, context, device, data_dir):
        return {}

    with pytest.raises(TypeError, match=r"takes `context` and `device`, `data_dir`: take `context` alone"):
        takes_context(both)


# The systems whose protocols have moved onto the run context (docs/CONTRACTS.md, "Seeding"); a system
# joins this tuple in the commit that moves it, with its bundle refresh.
ON_THE_CONTEXT = ("anastrophic", "dtgma", "mygo", "sgm")


def test_every_ledger_protocol_of_a_system_on_the_context_takes_it_and_every_other_is_callable():
    from verify.executors import resolve_protocol
    from verify.ledger import load_all

    protocols = {entry.protocol for entry in load_all(Path(__file__).resolve().parent.parent / "claims")}
    for name in sorted(protocols):
        system = name.split(":")[0].split(".")[1]
        if takes_context(resolve_protocol(name)):  # raises for a protocol taking both conventions
            continue
        assert system not in ON_THE_CONTEXT, f"{name} takes `seed, device, data_dir`, but {system} is on the context"
    assert {name.split(".")[1] for name in protocols} >= set(ON_THE_CONTEXT)
