"""The diagonal Fisher of both EWC estimators against per-sample gradients from torch.func.

`vmap_fisher` below is the definition, computed as both estimators computed it before the closed
forms of implementations/baselines/fisher.py: vmap of grad over single samples, squared, summed,
divided by the sample count. Float64 models must agree to 1e-6 relative per element (they agree
to about 1e-14). Float32 models, the precision EWC runs in, must agree to 2e-6 of each tensor's
largest entry: a per-sample conv gradient sums up to 784 positions, in another order than vmap's
convolution backward, and differences up to 6e-7 of the largest entry were seen.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, grad, vmap

from implementations.anastrophic.model import SimpleCNN
from implementations.baselines import fisher
from implementations.baselines.ewc import empirical_fisher
from implementations.common.models import ACTIVATIONS, MLP, MultiHeadMLP, TaskConditioned
from implementations.common.streams import Task
from implementations.dtgma import baselines as dtgma_baselines
from implementations.dtgma.cnn import BasicBlock
from implementations.dtgma.model import DTGMAModel


pytestmark = pytest.mark.usefixtures("one_thread")


def vmap_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task_id: int | None, names: list[str],
                one_sample_loss, chunk: int) -> dict[str, torch.Tensor]:
    """Mean over samples of squared per-sample gradients, from vmap(grad) on single samples in eval mode."""
    parameters = dict(model.named_parameters())
    differentiated = {name: parameters[name].detach() for name in names}
    constants = {name: p.detach() for name, p in parameters.items() if name not in differentiated}
    constants.update(dict(model.named_buffers()))
    extra = (task_id,) if isinstance(model, TaskConditioned) else ()

    def loss(params, sample_x, sample_y):
        logits = functional_call(model, {**constants, **params}, (sample_x.unsqueeze(0), *extra))
        return one_sample_loss(logits, sample_y)

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    sums = {name: torch.zeros_like(p) for name, p in differentiated.items()}
    was_training = model.training
    model.eval()
    for start in range(0, len(x), chunk):
        for name, gradient in per_sample(differentiated, x[start:start + chunk], y[start:start + chunk]).items():
            sums[name] += (gradient ** 2).sum(0)
    model.train(was_training)
    return {name: value / len(x) for name, value in sums.items()}


def ewc_sample_loss(logits, y):
    """baselines/ewc.py's: cross-entropy of one sample."""
    return F.cross_entropy(logits, y.unsqueeze(0))


def dtgma_sample_loss(logits, y):
    """dtgma/baselines.py's: the true label's log-likelihood."""
    return F.log_softmax(logits, dim=1)[0].gather(0, y.unsqueeze(0)).squeeze(0)


def assert_matches(fast: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(fast) == list(reference)
    for name, expected in reference.items():
        assert fast[name].shape == expected.shape and fast[name].dtype == expected.dtype, name
        scale = float(expected.abs().max())
        if expected.dtype == torch.float64:
            tolerance = 1e-6 * expected.abs() + 1e-12 * scale
        else:
            tolerance = torch.full_like(expected, 2e-6 * scale)
        excess = (fast[name] - expected).abs() - tolerance
        assert float(excess.max()) <= 0, f"{name}: off by {float((fast[name] - expected).abs().max())} (max {scale})"


def make_task(task_id: int, x: torch.Tensor, n_classes: int, seed: int) -> Task:
    y = torch.randint(n_classes, (len(x),), generator=torch.Generator().manual_seed(seed))
    return Task(task_id, tuple(range(n_classes)), x, y, x[:2], y[:2], "local")


def random_inputs(seed: int, n: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


dtypes = st.sampled_from([torch.float32, torch.float64])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), in_features=st.integers(1, 12), hidden=st.lists(st.integers(1, 10), max_size=3),
       out_features=st.integers(2, 6), activation=st.sampled_from(sorted(ACTIVATIONS)), n=st.integers(1, 40),
       samples=st.one_of(st.none(), st.integers(1, 50)), batch_size=st.integers(1, 16),
       select=st.data(), dtype=dtypes)
def test_ewc_fisher_of_random_mlps_matches_vmap(seed, in_features, hidden, out_features, activation, n, samples,
                                                batch_size, select, dtype):
    torch.manual_seed(seed)
    model = MLP(in_features, hidden, out_features, activation, dropout=0.3).to(dtype).train()
    task = make_task(0, random_inputs(seed, n, (in_features,), dtype), out_features, seed)
    all_names = [name for name, _ in model.named_parameters()]
    names = select.draw(st.one_of(st.none(), st.lists(st.sampled_from(all_names), min_size=1, unique=True)))
    fast = empirical_fisher(model, task, names, samples=samples, batch_size=batch_size,
                            generator=torch.Generator().manual_seed(seed))
    chosen = (torch.arange(n) if samples is None or samples >= n
              else torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples])
    reference = vmap_fisher(model, task.x_train[chosen], task.y_train[chosen], 0, names or all_names,
                            ewc_sample_loss, batch_size)
    assert_matches(fast, reference)
    assert model.training  # the Fisher pass runs in eval mode and restores the mode


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_heads=st.integers(1, 4), task_id=st.integers(0, 3), n=st.integers(1, 30),
       dtype=dtypes)
def test_ewc_fisher_of_a_multi_head_model_uses_the_task_head_only(seed, n_heads, task_id, n, dtype):
    task_id = task_id % n_heads
    torch.manual_seed(seed)
    model = MultiHeadMLP(7, [5, 4], n_heads, 3).to(dtype)
    task = make_task(task_id, random_inputs(seed, n, (7,), dtype), 3, seed)
    fast = empirical_fisher(model, task, None, batch_size=8)
    assert_matches(fast, vmap_fisher(model, task.x_train, task.y_train, task_id,
                                     [name for name, _ in model.named_parameters()], ewc_sample_loss, 8))
    for head in range(n_heads):
        if head != task_id:
            assert not fast[f"heads.{head}.weight"].any()


def tiny_resnet() -> nn.Module:
    """The ResNet EWC baseline's building blocks (BatchNorm, strided shortcut) at a size vmap handles in a test."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), BasicBlock(3, 4, 2),
                          BasicBlock(4, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics other than the initial 0 / 1, as after training
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model


DTGMA_FISHER_MODELS = {
    # FaithfulEWC's models (protocols.py): shared head, multi-head control, ResNet shared head
    "shared_head": (lambda: dtgma_baselines.SharedHeadMLP(10, 3), (10,)),
    "multi_head": (lambda: MultiHeadMLP(10, [8, 8], 3, 3), (10,)),
    "resnet_blocks": (tiny_resnet, (1, 8, 8)),
    # the other DTG-MA models: parameters outside any Linear layer, Linear layers on [N, 1, d] inputs
    "hat": (lambda: dtgma_baselines.HATMLP(10, 3, 3), (10,)),
    "lora": (lambda: dtgma_baselines.LoRAMLP(10, 3, 3), (10,)),
    "adapter": (lambda: dtgma_baselines.AdapterMLP(10, 3, 3), (10,)),
    "dtgma": (lambda: dtgma_model(), (10,)),
}


def dtgma_model() -> DTGMAModel:
    model = DTGMAModel(10, hidden_dim=8, num_classes=3, n_heads=2, n_tasks_max=3)
    for task_id in range(3):
        model.add_task(task_id)
    return model


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(sorted(DTGMA_FISHER_MODELS)), n=st.integers(1, 24),
       chunk=st.integers(1, 10), task_id=st.integers(0, 2), dtype=dtypes)
def test_dtgma_fisher_matches_vmap(seed, kind, n, chunk, task_id, dtype):
    make_model, shape = DTGMA_FISHER_MODELS[kind]
    torch.manual_seed(seed)
    model = make_model().to(dtype)
    x = random_inputs(seed, n, shape, dtype)
    y = torch.randint(3, (n,), generator=torch.Generator().manual_seed(seed))
    fast = dtgma_baselines.empirical_fisher(model, x, y, task_id, chunk=chunk)
    assert_matches(fast, vmap_fisher(model, x, y, task_id, [name for name, _ in model.named_parameters()],
                                     dtgma_sample_loss, chunk))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), dtype=dtypes)
def test_ewc_fisher_of_the_anastrophic_cnn_weights_matches_vmap(seed, n, dtype):
    torch.manual_seed(seed)
    model = SimpleCNN().to(dtype)
    task = make_task(0, random_inputs(seed, n, (1, 28, 28), dtype), 10, seed)
    names = [name for name, _ in model.named_parameters() if "weight" in name]
    assert_matches(empirical_fisher(model, task, names, batch_size=5),
                   vmap_fisher(model, task.x_train, task.y_train, 0, names, ewc_sample_loss, 5))


class AwkwardLayers(nn.Module):
    """Linear layers the closed form must not take at face value."""

    def __init__(self):
        super().__init__()
        self.reused = nn.Linear(6, 6)  # called twice
        self.inplace = nn.Linear(6, 6)  # its output is changed in place by ReLU
        self.hooked = nn.Linear(6, 6)  # a forward hook rescales its output
        self.hooked.register_forward_hook(lambda module, args, output: 2.0 * output)
        self.sequence = nn.Linear(6, 6)  # applied to [N, 2, 6]
        self.read_twice = nn.Linear(6, 6)  # its weight is also used outside the layer
        self.discarded = nn.Linear(6, 6, bias=False)  # called, output unused; its weight acts elsewhere
        self.unused = nn.Linear(6, 6)  # never called: zero Fisher
        self.plain = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reused(torch.tanh(self.reused(x)))
        h = nn.functional.relu(self.inplace(h), inplace=True)
        h = self.hooked(h)
        h = self.sequence(torch.stack([h, -h], dim=1)).sum(1)
        h = self.read_twice(h) + torch.tanh(h @ self.read_twice.weight)
        self.discarded(h)
        h = torch.tanh(h @ self.discarded.weight.T)
        return self.plain(h)


def test_awkward_layers_fall_back_to_vmap_and_still_match(monkeypatch):
    torch.manual_seed(0)
    model = AwkwardLayers().double()
    x = random_inputs(1, 9, (6,), torch.float64)
    y = torch.randint(3, (9,), generator=torch.Generator().manual_seed(1))
    names = [name for name, _ in model.named_parameters()]
    by_vmap = []
    add_vmap_sums = fisher._add_vmap_sums

    def recording(model, differentiated, *args):
        by_vmap.extend(differentiated)
        add_vmap_sums(model, differentiated, *args)

    monkeypatch.setattr(fisher, "_add_vmap_sums", recording)
    fast = dtgma_baselines.empirical_fisher(model, x, y, 0, chunk=4)
    assert_matches(fast, vmap_fisher(model, x, y, 0, names, dtgma_sample_loss, 4))
    awkward = {name for name in names if name.split(".")[0] in ("reused", "inplace", "hooked", "sequence", "read_twice",
                                                                  "discarded")}
    assert set(by_vmap) == awkward and len(by_vmap) == 3 * len(awkward)  # each of 3 batches
    assert not fast["unused.weight"].any() and fast["plain.weight"].all()


@pytest.mark.parametrize("make_model, shape, names", [
    (lambda: MLP(8, [6, 5], 3), (8,), None),
    (lambda: MultiHeadMLP(8, [6], 2, 3), (8,), None),
    (SimpleCNN, (1, 28, 28), None),
    (tiny_resnet, (1, 8, 8), ["0.weight", "3.conv1.weight", "3.shortcut.0.weight", "7.weight", "7.bias"]),
])
def test_closed_forms_cover_linear_and_conv_layers_without_vmap(monkeypatch, make_model, shape, names):
    """Speed depends on this: an MLP's, the anastrophic CNN's and a ResNet's layers never reach vmap."""
    def no_vmap(*args):
        raise AssertionError("fell back to vmap")

    monkeypatch.setattr(fisher, "_add_vmap_sums", no_vmap)
    model = make_model()
    task = make_task(1, random_inputs(0, 6, shape, torch.float32), 3, 0)
    fast = empirical_fisher(model, task, names, batch_size=4)
    assert all(value.any() for name, value in fast.items() if not name.startswith("heads.0."))  # task 1's head


def test_fisher_pass_leaves_the_model_and_its_gradients_alone():
    torch.manual_seed(0)
    model = tiny_resnet().train()
    for parameter in model[7].parameters():
        parameter.requires_grad_(False)  # frozen parameters still get a Fisher, as vmap gave them
    before = {name: value.clone() for name, value in model.state_dict().items()}
    task = make_task(0, random_inputs(0, 5, (1, 8, 8), torch.float32), 3, 0)
    fast = empirical_fisher(model, task, None)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert fast["7.weight"].any()


def test_a_callers_no_grad_does_not_change_the_fisher():
    torch.manual_seed(0)
    model = MultiHeadMLP(8, [6], 2, 3)
    task = make_task(1, random_inputs(0, 7, (8,), torch.float32), 3, 0)
    with torch.no_grad():
        inside = empirical_fisher(model, task, None)
    outside = empirical_fisher(model, task, None)
    assert all(torch.equal(inside[name], outside[name]) for name in outside) and inside["heads.1.weight"].any()
