"""Canonical digests: stable, order-independent for dicts, sensitive to one bit, dtype and shape."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verify.digest import canonical_digest


def state():
    torch.manual_seed(0)
    return {"b.weight": torch.randn(3, 4), "a.bias": torch.randn(4), "c": torch.arange(5)}


def test_stable_across_calls_and_insertion_order():
    s = state()
    reordered = dict(reversed(list(s.items())))
    assert canonical_digest(s) == canonical_digest(s) == canonical_digest(reordered)


def test_numpy_and_torch_agree():
    s = state()
    assert canonical_digest(s) == canonical_digest({k: v.numpy() for k, v in s.items()})


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=11), st.integers(min_value=0, max_value=31))
def test_one_bit_flip_changes_digest(index, bit):
    s = state()
    before = canonical_digest(s)
    flat = s["b.weight"].view(-1).view(torch.int32)
    flat[index] ^= (1 << bit) if bit < 31 else -(1 << 31)
    assert canonical_digest(s) != before


def test_dtype_shape_and_name_matter():
    t = torch.zeros(4)
    assert canonical_digest({"x": t}) != canonical_digest({"x": t.double()})
    assert canonical_digest({"x": t}) != canonical_digest({"x": t.view(2, 2)})
    assert canonical_digest({"x": t}) != canonical_digest({"y": t})


def test_list_form_and_bfloat16():
    a = [torch.ones(2, dtype=torch.bfloat16), torch.zeros(3)]
    assert canonical_digest(a) == canonical_digest(list(a))
    assert canonical_digest(a) != canonical_digest(a[::-1])


def test_big_endian_array_hashes_as_little_endian():
    little = np.arange(6, dtype="<f4")
    assert canonical_digest([little]) == canonical_digest([little.astype(">f4")])


def test_known_value_regression():
    # Pinned so a change of the canonical byte layout is noticed: it would orphan every stored digest.
    expected = "ced7b6446e7f92fd401d4083f613210b9da9bd077ccae81ce95bacf29536d5f3"
    assert canonical_digest({"w": torch.tensor([1.0, 2.0])}) == expected
    assert canonical_digest({"w": np.array([1.0, 2.0], dtype="<f4")}) == expected
