"""Every ember.nn layer against torch.nn: same weights (a torch state_dict loaded into ours),
same inputs, same outputs and gradients of inputs and parameters, in float32 and float64."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle

TOLERANCE = {"float32": 2e-4, "float64": 1e-9}


# -- inputs ------------------------------------------------------------------------------------


@dataclass
class Const:
    """An input that needs no gradient (a mask, a target, indices)."""

    value: object


@dataclass
class Same:
    """The very tensor object passed at position `index` (self-attention's query is key)."""

    index: int


def randn(*shape, seed=0):
    return np.random.default_rng(seed + 7 * len(shape) + sum(shape)).standard_normal(shape)


def uniform(low, high, *shape, seed=1):
    return np.random.default_rng(seed + sum(shape)).uniform(low, high, shape)


def ints(high, *shape, seed=2):
    return np.random.default_rng(seed + sum(shape)).integers(0, high, shape)


def _convert(fw, value, dtype, grad):
    """numpy -> a tensor of fw (torch or ember), floats in dtype."""
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "f":
        value = value.astype(dtype)
        t = fw.tensor(value)
        return t.requires_grad_(True) if grad else t
    return fw.tensor(value)


def _build_inputs(fw, specs, dtype):
    built, leaves = [], []
    for spec in specs:
        if isinstance(spec, Same):
            built.append(built[spec.index])
        elif isinstance(spec, Const):
            built.append(_convert(fw, spec.value, dtype, False))
        else:
            t = _convert(fw, spec, dtype, True)
            built.append(t)
            leaves.append(t)
    return built, leaves


def _numpy(t):
    return t.detach().numpy().astype(np.float64) if hasattr(t, "detach") else np.asarray(t)


def assert_close(ours, theirs, dtype, what):
    expected = _numpy(theirs)
    actual = _numpy(ours)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    tol = TOLERANCE[dtype]
    scale = max(1.0, float(np.nanmax(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


# -- the harness -------------------------------------------------------------------------------


def load_torch_state(ours, theirs) -> None:
    """Copy a torch module's state_dict into ours (strict: every name must match)."""
    state = {k: ember.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)


def _outputs(out):
    return list(out) if isinstance(out, tuple) else [out]


def compare_with_torch(make, specs, dtype, train=True, kwargs=None, backward=True):
    """Build make(torch) and make(ember) with torch's weights, run both, compare everything.

    Returns (ours, theirs) so callers can check state the forward pass changed.
    """
    kwargs = kwargs or {}
    torch.manual_seed(0)
    theirs = make(torch).to(getattr(torch, dtype)).train(train)
    ours = make(ember).to(getattr(ember, dtype)).train(train)
    load_torch_state(ours, theirs)
    t_args, t_leaves = _build_inputs(torch, specs, dtype)
    e_args, e_leaves = _build_inputs(ember, specs, dtype)
    t_kwargs = {k: _convert(torch, v, dtype, False) for k, v in kwargs.items()}
    e_kwargs = {k: _convert(ember, v, dtype, False) for k, v in kwargs.items()}
    t_out = _outputs(theirs(*t_args, **t_kwargs))
    e_out = _outputs(ours(*e_args, **e_kwargs))
    assert len(e_out) == len(t_out)
    for i, (e, t) in enumerate(zip(e_out, t_out)):
        if t is None:
            assert e is None, f"output {i}: expected None"
            continue
        assert e.dtype.name == str(t.dtype).replace("torch.", ""), f"output {i} dtype"
        assert_close(e, t, dtype, f"output {i}")
    if not backward:
        return ours, theirs
    t_loss, e_loss = 0, 0
    for i, (e, t) in enumerate(zip(e_out, t_out)):
        if t is None or not t.requires_grad:
            continue
        g = randn(*t.shape, seed=10 + i).astype(dtype)
        t_loss = t_loss + (t * torch.tensor(g)).sum()
        e_loss = e_loss + (e * ember.tensor(g)).sum()
    if isinstance(t_loss, int):
        return ours, theirs
    t_loss.backward()
    e_loss.backward()
    for i, (e, t) in enumerate(zip(e_leaves, t_leaves)):
        assert e.grad is not None, f"input {i} got no gradient"
        assert_close(e.grad, t.grad, dtype, f"grad of input {i}")
    t_params = dict(theirs.named_parameters())
    e_params = dict(ours.named_parameters())
    assert list(e_params) == list(t_params)
    for name, t in t_params.items():
        if t.grad is None:
            assert e_params[name].grad is None, f"{name} should get no gradient"
        else:
            assert_close(e_params[name].grad, t.grad, dtype, f"grad of {name}")
    return ours, theirs


@dataclass
class Case:
    id: str
    make: object
    specs: list
    kwargs: dict = field(default_factory=dict)
    modes: tuple = ("train",)


def _params(cases):
    return [
        pytest.param(case, dtype, mode, id=f"{case.id}-{dtype}-{mode}")
        for case in cases
        for dtype in ("float32", "float64")
        for mode in case.modes
    ]


def _run(case, dtype, mode):
    compare_with_torch(case.make, case.specs, dtype, mode == "train", case.kwargs)


# -- linear, conv, pooling ---------------------------------------------------------------------

LINEAR_CASES = [
    Case("identity", lambda fw: fw.nn.Identity(3, unused=True), [randn(2, 3)]),
    Case("linear", lambda fw: fw.nn.Linear(5, 3), [randn(4, 5)]),
    Case("linear-no-bias-3d", lambda fw: fw.nn.Linear(5, 3, bias=False), [randn(2, 4, 5)]),
    Case("linear-1d-input", lambda fw: fw.nn.Linear(5, 3), [randn(5)]),
    Case("bilinear", lambda fw: fw.nn.Bilinear(4, 5, 3), [randn(6, 4), randn(6, 5)]),
    Case(
        "bilinear-no-bias",
        lambda fw: fw.nn.Bilinear(2, 3, 4, bias=False),
        [randn(2, 5, 2), randn(2, 5, 3)],
    ),
    Case("flatten", lambda fw: fw.nn.Flatten(), [randn(2, 3, 4, 5)]),
    Case("flatten-0-2", lambda fw: fw.nn.Flatten(0, 2), [randn(2, 3, 4, 5)]),
    Case("unflatten", lambda fw: fw.nn.Unflatten(1, (2, 3)), [randn(4, 6, 2)]),
    Case("unflatten-neg", lambda fw: fw.nn.Unflatten(-1, (2, -1)), [randn(4, 6)]),
]

CONV_CASES = [
    Case("conv1d", lambda fw: fw.nn.Conv1d(4, 6, 3), [randn(2, 4, 9)]),
    Case(
        "conv1d-strided-dilated-grouped",
        lambda fw: fw.nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False),
        [randn(2, 4, 11)],
    ),
    Case(
        "conv1d-same-even-kernel",
        lambda fw: fw.nn.Conv1d(3, 2, 4, padding="same"),
        [randn(2, 3, 7)],
    ),
    Case("conv1d-valid", lambda fw: fw.nn.Conv1d(3, 2, 3, padding="valid"), [randn(2, 3, 7)]),
    Case("conv1d-unbatched", lambda fw: fw.nn.Conv1d(3, 2, 3, padding=1), [randn(3, 6)]),
    Case(
        "conv1d-circular",
        lambda fw: fw.nn.Conv1d(3, 2, 3, padding=2, padding_mode="circular"),
        [randn(2, 3, 6)],
    ),
    Case("conv2d", lambda fw: fw.nn.Conv2d(3, 4, 3), [randn(2, 3, 7, 6)]),
    Case(
        "conv2d-asymmetric-grouped",
        lambda fw: fw.nn.Conv2d(
            4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, bias=False
        ),
        [randn(2, 4, 9, 8)],
    ),
    Case(
        "conv2d-same-dilated",
        lambda fw: fw.nn.Conv2d(3, 4, (4, 3), padding="same", dilation=(1, 2)),
        [randn(2, 3, 7, 8)],
    ),
    Case("conv2d-valid", lambda fw: fw.nn.Conv2d(2, 3, 2, padding="valid"), [randn(1, 2, 5, 5)]),
    Case(
        "conv2d-depthwise",
        lambda fw: fw.nn.Conv2d(4, 8, 3, padding=1, groups=4),
        [randn(2, 4, 5, 5)],
    ),
    Case("conv2d-unbatched", lambda fw: fw.nn.Conv2d(3, 2, 3, padding=1), [randn(3, 5, 4)]),
    Case(
        "conv2d-reflect",
        lambda fw: fw.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
        [randn(2, 2, 5, 6)],
    ),
    Case(
        "conv2d-replicate",
        lambda fw: fw.nn.Conv2d(2, 3, 3, padding=(2, 1), padding_mode="replicate"),
        [randn(2, 2, 5, 6)],
    ),
    Case(
        "conv2d-circular-same",
        lambda fw: fw.nn.Conv2d(2, 3, 4, padding="same", padding_mode="circular"),
        [randn(2, 2, 6, 6)],
    ),
]

POOL_CASES = [
    Case("maxpool", lambda fw: fw.nn.MaxPool2d(2), [randn(2, 3, 6, 6)]),
    Case("maxpool-padded", lambda fw: fw.nn.MaxPool2d(3, 2, 1), [randn(2, 3, 7, 7)]),
    Case("maxpool-ceil", lambda fw: fw.nn.MaxPool2d(2, ceil_mode=True), [randn(1, 2, 7, 7)]),
    Case(
        "maxpool-dilated", lambda fw: fw.nn.MaxPool2d(3, stride=2, dilation=2), [randn(1, 2, 9, 9)]
    ),
    Case("maxpool-unbatched", lambda fw: fw.nn.MaxPool2d((2, 3)), [randn(2, 6, 6)]),
    Case("avgpool", lambda fw: fw.nn.AvgPool2d(2), [randn(2, 3, 6, 6)]),
    Case("avgpool-padded", lambda fw: fw.nn.AvgPool2d(3, 2, 1), [randn(2, 3, 7, 7)]),
    Case(
        "avgpool-exclude-pad",
        lambda fw: fw.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        [randn(2, 3, 7, 7)],
    ),
    Case("avgpool-ceil", lambda fw: fw.nn.AvgPool2d(2, ceil_mode=True), [randn(1, 2, 7, 7)]),
    Case("avgpool-divisor", lambda fw: fw.nn.AvgPool2d(2, divisor_override=3), [randn(1, 2, 6, 6)]),
    Case("adaptive-avgpool", lambda fw: fw.nn.AdaptiveAvgPool2d((3, 2)), [randn(2, 3, 7, 5)]),
    Case("adaptive-avgpool-1", lambda fw: fw.nn.AdaptiveAvgPool2d(1), [randn(2, 3, 5, 5)]),
    Case(
        "adaptive-avgpool-none", lambda fw: fw.nn.AdaptiveAvgPool2d((None, 2)), [randn(2, 3, 4, 5)]
    ),
    Case("adaptive-avgpool-upsample", lambda fw: fw.nn.AdaptiveAvgPool2d(4), [randn(1, 2, 3, 3)]),
]


@pytest.mark.parametrize(("case", "dtype", "mode"), _params(LINEAR_CASES + CONV_CASES + POOL_CASES))
def test_linear_conv_pool_layers_match_torch(case, dtype, mode):
    _run(case, dtype, mode)


# -- normalization, embedding, dropout, activations -------------------------------------------

BOTH = ("train", "eval")

NORM_CASES = [
    Case("batchnorm1d-2d", lambda fw: fw.nn.BatchNorm1d(4), [randn(8, 4)], modes=BOTH),
    Case("batchnorm1d-3d", lambda fw: fw.nn.BatchNorm1d(4), [randn(6, 4, 5)], modes=BOTH),
    Case("batchnorm2d", lambda fw: fw.nn.BatchNorm2d(3), [randn(4, 3, 5, 5)], modes=BOTH),
    Case(
        "batchnorm2d-no-affine",
        lambda fw: fw.nn.BatchNorm2d(3, affine=False),
        [randn(2, 3, 4, 4)],
        modes=BOTH,
    ),
    Case(
        "batchnorm2d-no-bias",
        lambda fw: fw.nn.BatchNorm2d(3, bias=False),
        [randn(2, 3, 4, 4)],
        modes=BOTH,
    ),
    Case(
        "batchnorm1d-untracked",
        lambda fw: fw.nn.BatchNorm1d(4, track_running_stats=False),
        [randn(8, 4)],
        modes=BOTH,
    ),
    Case("layernorm", lambda fw: fw.nn.LayerNorm(5), [randn(3, 4, 5)]),
    Case("layernorm-2d-shape", lambda fw: fw.nn.LayerNorm((3, 5), eps=1e-3), [randn(2, 3, 5)]),
    Case(
        "layernorm-no-affine",
        lambda fw: fw.nn.LayerNorm(6, elementwise_affine=False),
        [randn(4, 6)],
    ),
    Case("layernorm-no-bias", lambda fw: fw.nn.LayerNorm(6, bias=False), [randn(4, 6)]),
    Case("groupnorm", lambda fw: fw.nn.GroupNorm(2, 4), [randn(2, 4, 3, 3)]),
    Case("groupnorm-one-group", lambda fw: fw.nn.GroupNorm(1, 4, affine=False), [randn(3, 4, 5)]),
    Case("groupnorm-instance", lambda fw: fw.nn.GroupNorm(4, 4, eps=1e-3), [randn(2, 4, 6)]),
    Case("groupnorm-2d-input", lambda fw: fw.nn.GroupNorm(2, 6, bias=False), [randn(3, 6)]),
    Case("instancenorm1d", lambda fw: fw.nn.InstanceNorm1d(4), [randn(3, 4, 6)], modes=BOTH),
    Case(
        "instancenorm2d-affine",
        lambda fw: fw.nn.InstanceNorm2d(3, affine=True),
        [randn(2, 3, 4, 5)],
        modes=BOTH,
    ),
    Case(
        "instancenorm2d-unbatched",
        lambda fw: fw.nn.InstanceNorm2d(3, affine=True, eps=1e-3),
        [randn(3, 4, 4)],
    ),
    Case(
        "instancenorm2d-tracked",
        lambda fw: fw.nn.InstanceNorm2d(3, track_running_stats=True),
        [randn(2, 3, 4, 4) * 3 + 1],
        modes=BOTH,
    ),
    Case(
        "instancenorm3d-affine-tracked",
        lambda fw: fw.nn.InstanceNorm3d(2, affine=True, track_running_stats=True),
        [randn(2, 2, 3, 2, 3)],
        modes=BOTH,
    ),
]

EMBEDDING_CASES = [
    Case("embedding", lambda fw: fw.nn.Embedding(10, 4), [Const(ints(10, 3, 5))]),
    Case(
        "embedding-padding",
        lambda fw: fw.nn.Embedding(6, 3, padding_idx=0),
        [Const(np.array([[0, 1, 2, 0], [3, 0, 5, 1]]))],
    ),
    Case(
        "embedding-scale-grad-by-freq",
        lambda fw: fw.nn.Embedding(6, 3, padding_idx=2, scale_grad_by_freq=True),
        [Const(np.array([[0, 1, 2, 0], [3, 0, 5, 1]]))],
    ),
    Case(
        "embedding-negative-padding",
        lambda fw: fw.nn.Embedding(6, 3, padding_idx=-1),
        [Const(np.array([5, 1, 5, 2]))],
    ),
]

DROPOUT_CASES = [
    Case("dropout-p0", lambda fw: fw.nn.Dropout(0.0), [randn(4, 5)]),
    Case("dropout-eval", lambda fw: fw.nn.Dropout(0.5), [randn(4, 5)], modes=("eval",)),
]

ACTIVATION_CASES = [
    Case("relu", lambda fw: fw.nn.ReLU(), [randn(3, 7)]),
    Case("leaky-relu", lambda fw: fw.nn.LeakyReLU(0.2), [randn(3, 7)]),
    Case("gelu", lambda fw: fw.nn.GELU(), [randn(3, 7)]),
    Case("gelu-tanh", lambda fw: fw.nn.GELU(approximate="tanh"), [randn(3, 7)]),
    Case("silu", lambda fw: fw.nn.SiLU(), [randn(3, 7)]),
    Case("sigmoid", lambda fw: fw.nn.Sigmoid(), [randn(3, 7)]),
    Case("tanh", lambda fw: fw.nn.Tanh(), [randn(3, 7)]),
    Case("softmax", lambda fw: fw.nn.Softmax(dim=1), [randn(3, 7)]),
    Case("softmax-last-3d", lambda fw: fw.nn.Softmax(dim=-1), [randn(2, 3, 4)]),
    Case("log-softmax", lambda fw: fw.nn.LogSoftmax(dim=1), [randn(3, 7)]),
    Case("log-softmax-dim0", lambda fw: fw.nn.LogSoftmax(dim=0), [randn(3, 7) * 10]),
]


@pytest.mark.parametrize(
    ("case", "dtype", "mode"),
    _params(NORM_CASES + EMBEDDING_CASES + DROPOUT_CASES + ACTIVATION_CASES),
)
def test_norm_embedding_dropout_activation_layers_match_torch(case, dtype, mode):
    _run(case, dtype, mode)


@pytest.mark.parametrize(
    "make",
    [
        lambda fw: fw.nn.ReLU(inplace=True),
        lambda fw: fw.nn.LeakyReLU(0.1, inplace=True),
        lambda fw: fw.nn.SiLU(inplace=True),
        lambda fw: fw.nn.Dropout(0.0, inplace=True),
    ],
    ids=["relu", "leaky-relu", "silu", "dropout"],
)
def test_inplace_activations_match_torch(make):
    x = randn(4, 5)
    results = {}
    for fw in (torch, ember):
        leaf = fw.tensor(x).requires_grad_(True)
        hidden = leaf * 2
        out = make(fw)(hidden)
        assert out is hidden  # written in place
        (out * fw.tensor(randn(4, 5, seed=3))).sum().backward()
        results[fw.__name__] = (out, leaf.grad)
    for e, t in zip(results["ember"], results["torch"]):
        assert_close(e, t, "float64", "in-place activation")


@pytest.mark.parametrize("momentum", [0.1, 0.4, None])
@pytest.mark.parametrize(
    ("layer", "shape"),
    [("BatchNorm1d", (8, 4)), ("BatchNorm1d", (6, 4, 3)), ("BatchNorm2d", (4, 4, 3, 3)),
     ("BatchNorm3d", (3, 4, 2, 3, 2))],
)
def test_batchnorm_running_statistics_follow_torch_over_steps(layer, shape, momentum):
    def make(fw):
        return getattr(fw.nn, layer)(4, momentum=momentum)

    torch_bn = make(torch).double()
    ours = make(ember).double()
    for step in range(4):
        x = randn(*shape, seed=step) * (step + 1) + step
        t_out = torch_bn(torch.tensor(x))
        e_out = ours(ember.tensor(x))
        assert_close(e_out, t_out, "float64", f"step {step} output")
    assert ours.num_batches_tracked.item() == 4
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert_close(getattr(ours, name), getattr(torch_bn, name), "float64", name)
    torch_bn.eval()
    ours.eval()
    x = randn(*shape, seed=9)
    assert_close(ours(ember.tensor(x)), torch_bn(torch.tensor(x)), "float64", "eval output")
    assert ours.num_batches_tracked.item() == 4  # eval leaves the statistics alone


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        ("InstanceNorm1d", (3, 4, 5)),
        ("InstanceNorm2d", (2, 4, 3, 3)),
        ("InstanceNorm2d", (4, 3, 3)),  # unbatched
    ],
)
def test_instancenorm_running_statistics_follow_torch_over_steps(layer, shape, momentum):
    def make(fw):
        return getattr(fw.nn, layer)(4, momentum=momentum, track_running_stats=True, affine=True)

    torch_norm = make(torch).double()
    ours = make(ember).double()
    for step in range(3):
        x = randn(*shape, seed=step) * (step + 1) + step
        assert_close(ours(ember.tensor(x)), torch_norm(torch.tensor(x)), "float64", f"step {step}")
    for name in ("running_mean", "running_var"):
        assert_close(getattr(ours, name), getattr(torch_norm, name), "float64", name)
    torch_norm.eval()
    ours.eval()
    x = randn(*shape, seed=9)
    assert_close(ours(ember.tensor(x)), torch_norm(torch.tensor(x)), "float64", "eval output")


def test_instancenorm_bad_inputs_raise_as_torch():
    cases = [
        (lambda fw: fw.nn.InstanceNorm2d(3), (2, 3)),  # rank
        (lambda fw: fw.nn.InstanceNorm2d(3, affine=True), (2, 4, 5, 5)),  # channels
        (lambda fw: fw.nn.InstanceNorm1d(3), (2, 3, 1)),  # one spatial element in training
    ]
    for make, shape in cases:
        x = np.ones(shape)
        with pytest.raises(ValueError) as theirs:
            make(torch)(torch.tensor(x))
        with pytest.raises(ValueError) as ours:
            make(ember)(ember.tensor(x))
        assert isinstance(ours.value, ember.EmberError)
        assert str(theirs.value).split(" (")[0][:30] == str(ours.value).split(" (")[0][:30]
    with pytest.warns(UserWarning, match="does not match num_features"):
        ember.nn.InstanceNorm1d(3)(ember.ones(2, 5, 4))


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_embedding_max_norm_renormalises_looked_up_rows_like_torch(norm_type):
    indices = np.array([[0, 3, 3], [5, 1, 0]])
    ours, theirs = compare_with_torch(
        lambda fw: fw.nn.Embedding(7, 4, max_norm=1.5, norm_type=norm_type),
        [Const(indices)],
        "float64",
    )
    # the rows that were looked up are rewritten in place, the others are not
    assert_close(ours.weight, theirs.weight, "float64", "renormalised weight")


def test_batchnorm_eval_without_running_stats_uses_batch_statistics():
    ours, _ = compare_with_torch(
        lambda fw: fw.nn.BatchNorm2d(3, track_running_stats=False),
        [randn(4, 3, 2, 2)],
        "float64",
        train=False,
    )
    assert ours.running_mean is None and "running_mean" not in ours.state_dict()


# -- losses ------------------------------------------------------------------------------------

LOGITS = randn(6, 5)
TARGET = Const(ints(5, 6))
PROBS = Const(np.exp(LOGITS * 0.5) / np.exp(LOGITS * 0.5).sum(1, keepdims=True))
WEIGHT = np.array([0.5, 1.0, 2.0, 1.5, 0.2])
IGNORED = Const(np.array([0, 4, -100, 2, 3, -100]))
UNIT = uniform(0.05, 0.95, 4, 3)
BINARY = Const((uniform(0, 1, 4, 3, seed=3) > 0.5).astype(np.float64))

LOSS_CASES = [
    *[
        Case(
            f"cross-entropy-{r}",
            lambda fw, r=r: fw.nn.CrossEntropyLoss(reduction=r),
            [LOGITS, TARGET],
        )
        for r in ("mean", "sum", "none")
    ],
    Case(
        "cross-entropy-weight-ignore",
        lambda fw: fw.nn.CrossEntropyLoss(weight=fw.tensor(WEIGHT)),
        [LOGITS, IGNORED],
    ),
    Case(
        "cross-entropy-custom-ignore",
        lambda fw: fw.nn.CrossEntropyLoss(ignore_index=2, reduction="sum"),
        [LOGITS, TARGET],
    ),
    Case(
        "cross-entropy-smoothing",
        lambda fw: fw.nn.CrossEntropyLoss(weight=fw.tensor(WEIGHT), label_smoothing=0.1),
        [LOGITS, IGNORED],
    ),
    Case("cross-entropy-probabilities", lambda fw: fw.nn.CrossEntropyLoss(), [LOGITS, PROBS]),
    Case(
        "cross-entropy-k-dim",
        lambda fw: fw.nn.CrossEntropyLoss(label_smoothing=0.2),
        [randn(2, 5, 3, 2), Const(ints(5, 2, 3, 2))],
    ),
    *[
        Case(f"nll-{r}", lambda fw, r=r: fw.nn.NLLLoss(reduction=r), [LOGITS, TARGET])
        for r in ("mean", "sum", "none")
    ],
    Case(
        "nll-weight-ignore", lambda fw: fw.nn.NLLLoss(weight=fw.tensor(WEIGHT)), [LOGITS, IGNORED]
    ),
    *[
        Case(
            f"mse-{r}",
            lambda fw, r=r: fw.nn.MSELoss(reduction=r),
            [randn(4, 3), Const(randn(4, 3, seed=5))],
        )
        for r in ("mean", "sum", "none")
    ],
    Case("l1", lambda fw: fw.nn.L1Loss(), [randn(4, 3), Const(randn(4, 3, seed=5))]),
    Case(
        "l1-sum",
        lambda fw: fw.nn.L1Loss(reduction="sum"),
        [randn(4, 3), Const(randn(4, 3, seed=5))],
    ),
    Case(
        "smooth-l1", lambda fw: fw.nn.SmoothL1Loss(), [randn(5, 3) * 2, Const(randn(5, 3, seed=5))]
    ),
    Case(
        "smooth-l1-beta",
        lambda fw: fw.nn.SmoothL1Loss(beta=0.5, reduction="none"),
        [randn(5, 3) * 2, Const(randn(5, 3, seed=5))],
    ),
    Case("huber", lambda fw: fw.nn.HuberLoss(), [randn(5, 3) * 2, Const(randn(5, 3, seed=5))]),
    Case(
        "huber-delta",
        lambda fw: fw.nn.HuberLoss(reduction="sum", delta=0.7),
        [randn(5, 3) * 2, Const(randn(5, 3, seed=5))],
    ),
    Case("bce", lambda fw: fw.nn.BCELoss(), [UNIT, BINARY]),
    Case(
        "bce-weight-soft-target",
        lambda fw: fw.nn.BCELoss(weight=fw.tensor(np.array([1.0, 2.0, 0.5])), reduction="sum"),
        [UNIT, Const(uniform(0, 1, 4, 3, seed=4))],
    ),
    Case("bce-logits", lambda fw: fw.nn.BCEWithLogitsLoss(), [randn(4, 3) * 3, BINARY]),
    Case(
        "bce-logits-pos-weight",
        lambda fw: fw.nn.BCEWithLogitsLoss(
            weight=fw.tensor(np.array([1.0, 2.0, 0.5])),
            pos_weight=fw.tensor(np.array([3.0, 0.5, 1.0])),
            reduction="none",
        ),
        [randn(4, 3) * 3, BINARY],
    ),
    Case(
        "kl-div-batchmean",
        lambda fw: fw.nn.KLDivLoss(reduction="batchmean"),
        [randn(4, 5), Const(uniform(0.01, 1, 4, 5))],
    ),
    Case(
        "kl-div-log-target",
        lambda fw: fw.nn.KLDivLoss(reduction="sum", log_target=True),
        [randn(4, 5), Const(randn(4, 5, seed=6))],
    ),
    Case(
        "kl-div-none",
        lambda fw: fw.nn.KLDivLoss(reduction="none"),
        [randn(4, 5), Const(uniform(0, 1, 4, 5))],
    ),
]


@pytest.mark.parametrize(("case", "dtype", "mode"), _params(LOSS_CASES))
def test_losses_match_torch(case, dtype, mode):
    _run(case, dtype, mode)


def test_loss_weight_buffers_are_in_state_dict_like_torch():
    w = np.array([1.0, 2.0, 3.0])
    for name, kwargs in [
        ("CrossEntropyLoss", {"weight": w}),
        ("NLLLoss", {"weight": w}),
        ("BCELoss", {"weight": w}),
        ("BCEWithLogitsLoss", {"weight": w, "pos_weight": w}),
        ("MSELoss", {}),
    ]:
        keys = {}
        for fw in (torch, ember):
            module = getattr(fw.nn, name)(**{k: fw.tensor(v) for k, v in kwargs.items()})
            keys[fw.__name__] = list(module.state_dict())
        assert keys["ember"] == keys["torch"], name


def test_legacy_reduction_flags_match_torch():
    for size_average, reduce in [(False, None), (None, False), (True, True)]:
        with pytest.warns(UserWarning):
            ours = ember.nn.MSELoss(size_average=size_average, reduce=reduce)
        with pytest.warns(UserWarning):
            theirs = torch.nn.MSELoss(size_average=size_average, reduce=reduce)
        assert ours.reduction == theirs.reduction


# -- attention and transformers ---------------------------------------------------------------

E, HEADS, L, S, N = 8, 2, 4, 5, 3

KEY_PADDING = np.array(
    [[False, False, True, False, True], [False] * 5, [True, False, False, False, False]]
)
KEY_PADDING_SELF = KEY_PADDING[:, :L]
ATTN_BOOL = np.triu(np.ones((L, S), dtype=bool), k=2)
CAUSAL_BOOL = np.triu(np.ones((L, L), dtype=bool), k=1)
CAUSAL_FLOAT = np.where(CAUSAL_BOOL, -np.inf, 0.0)


def mha(**kw):
    return lambda fw: fw.nn.MultiheadAttention(E, HEADS, **kw)


def lne(length=L, seed=0):
    """(length, N, E) input, sequence first."""
    return randn(length, N, E, seed=seed)


def nle(length=L, seed=0):
    """(N, length, E) input, batch first."""
    return randn(N, length, E, seed=seed)


MHA_CASES = [
    Case("self", mha(), [lne(), Same(0), Same(0)], modes=BOTH),
    Case(
        "self-per-head-weights", mha(), [lne(), Same(0), Same(0)], {"average_attn_weights": False}
    ),
    Case("self-no-weights", mha(), [lne(), Same(0), Same(0)], {"need_weights": False}, modes=BOTH),
    Case("self-batch-first", mha(batch_first=True), [nle(), Same(0), Same(0)], modes=BOTH),
    Case("cross-shared-kv", mha(), [lne(), lne(S, 1), Same(1)]),
    Case("cross-distinct", mha(batch_first=True), [nle(), nle(S, 1), nle(S, 2)], modes=BOTH),
    Case(
        "cross-distinct-no-weights", mha(), [lne(), lne(S, 1), lne(S, 2)], {"need_weights": False}
    ),
    Case(
        "key-padding-bool",
        mha(),
        [lne(), lne(S, 1), lne(S, 2)],
        {"key_padding_mask": KEY_PADDING},
        modes=BOTH,
    ),
    Case(
        "key-padding-bool-batch-first-no-weights",
        mha(batch_first=True),
        [nle(), nle(S, 1), nle(S, 2)],
        {"key_padding_mask": KEY_PADDING, "need_weights": False},
    ),
    Case(
        "key-padding-float",
        mha(batch_first=True),
        [nle(), nle(S, 1), Same(1)],
        {"key_padding_mask": np.where(KEY_PADDING, -2.5, 0.0)},
    ),
    Case("attn-mask-bool", mha(), [lne(), lne(S, 1), lne(S, 2)], {"attn_mask": ATTN_BOOL}),
    Case(
        "attn-mask-float-no-weights",
        mha(batch_first=True),
        [nle(), nle(S, 1), nle(S, 2)],
        {"attn_mask": randn(L, S, seed=4), "need_weights": False},
    ),
    Case(
        "attn-mask-3d",
        mha(),
        [lne(), lne(S, 1), lne(S, 2)],
        {"attn_mask": randn(N * HEADS, L, S, seed=4)},
    ),
    Case(
        "attn-and-key-padding",
        mha(batch_first=True),
        [nle(), nle(S, 1), nle(S, 2)],
        {"attn_mask": ATTN_BOOL, "key_padding_mask": KEY_PADDING},
    ),
    Case(
        "causal-hint-no-weights",
        mha(batch_first=True),
        [nle(), Same(0), Same(0)],
        {"attn_mask": CAUSAL_BOOL, "is_causal": True, "need_weights": False},
        modes=BOTH,
    ),
    Case(
        "causal-hint-with-weights",
        mha(),
        [lne(), Same(0), Same(0)],
        {"attn_mask": CAUSAL_FLOAT, "is_causal": True},
    ),
    Case(
        "causal-hint-with-key-padding",
        mha(),
        [lne(), Same(0), Same(0)],
        {
            "attn_mask": CAUSAL_BOOL,
            "is_causal": True,
            "need_weights": False,
            "key_padding_mask": KEY_PADDING_SELF,
        },
    ),
    Case("unbatched", mha(), [randn(L, E), randn(S, E, seed=1), randn(S, E, seed=2)]),
    Case(
        "unbatched-masks",
        mha(batch_first=True),
        [randn(L, E), Same(0), Same(0)],
        {"key_padding_mask": KEY_PADDING_SELF[0], "attn_mask": CAUSAL_BOOL},
    ),
    Case(
        "kdim-vdim",
        lambda fw: fw.nn.MultiheadAttention(E, HEADS, kdim=3, vdim=6),
        [lne(), randn(S, N, 3, seed=1), randn(S, N, 6, seed=2)],
        {"key_padding_mask": KEY_PADDING},
    ),
    Case("no-bias", mha(bias=False), [lne(), Same(0), Same(0)]),
    Case(
        "bias-kv-zero-attn",
        mha(add_bias_kv=True, add_zero_attn=True),
        [lne(), lne(S, 1), Same(1)],
        {"key_padding_mask": KEY_PADDING, "attn_mask": ATTN_BOOL},
    ),
    Case("dropout-in-eval", mha(dropout=0.5), [lne(), Same(0), Same(0)], modes=("eval",)),
]


@pytest.mark.parametrize(("case", "dtype", "mode"), _params(MHA_CASES))
def test_multihead_attention_matches_torch(case, dtype, mode):
    _run(case, dtype, mode)


def test_multihead_attention_matches_torch_fast_path_without_grad():
    # in eval mode with no gradient torch takes its fused kernel; the numbers must agree
    make = mha(batch_first=True)
    x = nle()
    torch.manual_seed(0)
    theirs = make(torch).double().eval()
    ours = make(ember).double().eval()
    load_torch_state(ours, theirs)
    with torch.no_grad():
        t_out, t_w = theirs(
            *(torch.tensor(x),) * 3, key_padding_mask=torch.tensor(KEY_PADDING_SELF)
        )
    e_in = ember.tensor(x)
    with ember.no_grad():
        e_out, e_w = ours(e_in, e_in, e_in, key_padding_mask=ember.tensor(KEY_PADDING_SELF))
    assert_close(e_out, t_out, "float64", "output")
    assert_close(e_w, t_w, "float64", "weights")


def test_multihead_attention_state_dict_names_match_torch():
    for kw in ({}, {"kdim": 3, "vdim": 5}, {"bias": False}, {"add_bias_kv": True}):
        names = [list(mha(**kw)(fw).state_dict()) for fw in (torch, ember)]
        assert names[0] == names[1], kw


def encoder_layer(**kw):
    kw = {"dim_feedforward": 16, "dropout": 0.1, **kw}
    return lambda fw: fw.nn.TransformerEncoderLayer(E, HEADS, **kw)


CAUSAL_SELF = {"src_mask": CAUSAL_BOOL}

TRANSFORMER_CASES = [
    *[
        Case(
            f"layer-norm-first-{nf}-batch-first-{bf}",
            encoder_layer(norm_first=nf, batch_first=bf),
            [nle() if bf else lne()],
            {"src_key_padding_mask": KEY_PADDING_SELF},
            modes=("eval",),
        )
        for nf in (False, True)
        for bf in (False, True)
    ],
    Case(
        "layer-gelu-causal",
        encoder_layer(activation="gelu", batch_first=True),
        [nle()],
        {"src_mask": CAUSAL_BOOL, "is_causal": True},
        modes=("eval",),
    ),
    Case(
        "layer-module-activation-float-mask",
        lambda fw: fw.nn.TransformerEncoderLayer(
            E, HEADS, dim_feedforward=16, norm_first=True, activation=fw.nn.GELU(approximate="tanh")
        ),
        [lne()],
        {"src_mask": CAUSAL_FLOAT},
        modes=("eval",),
    ),
    Case(
        "layer-no-dropout-train",
        encoder_layer(dropout=0.0, layer_norm_eps=1e-3),
        [lne()],
        CAUSAL_SELF,
    ),
    Case("layer-no-bias", encoder_layer(bias=False, batch_first=True), [nle()], modes=("eval",)),
]


def encoder(norm=True, **kw):
    def build(fw):
        layer = fw.nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, **kw)
        extra = {"enable_nested_tensor": False}
        return fw.nn.TransformerEncoder(
            layer, 2, norm=fw.nn.LayerNorm(E) if norm else None, **extra
        )

    return build


ENCODER_CASES = [
    Case("encoder", encoder(), [lne()], {"mask": CAUSAL_BOOL}, modes=("eval",)),
    Case(
        "encoder-batch-first-padding",
        encoder(batch_first=True),
        [nle()],
        {"src_key_padding_mask": KEY_PADDING_SELF},
        modes=("eval",),
    ),
    Case(
        "encoder-norm-first-float-causal",
        encoder(norm=False, norm_first=True, batch_first=True),
        [nle()],
        {"mask": CAUSAL_FLOAT, "src_key_padding_mask": KEY_PADDING_SELF},
        modes=("eval",),
    ),
    Case("encoder-train-no-dropout", encoder(dropout=0.0), [lne()], {"is_causal": False}),
]


@pytest.mark.parametrize(("case", "dtype", "mode"), _params(TRANSFORMER_CASES + ENCODER_CASES))
def test_transformer_encoder_matches_torch(case, dtype, mode):
    _run(case, dtype, mode)


def test_transformer_encoder_layers_are_independent_copies():
    layer = ember.nn.TransformerEncoderLayer(E, HEADS, 16)
    enc = ember.nn.TransformerEncoder(layer, 3)
    weights = [m.linear1.weight for m in enc.layers]
    assert len({id(w) for w in weights}) == 3 and all(
        w is not layer.linear1.weight for w in weights
    )
    np.testing.assert_array_equal(weights[0].detach().numpy(), weights[2].detach().numpy())
    assert list(enc.state_dict()) == list(
        torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(E, HEADS, 16), 3, enable_nested_tensor=False
        ).state_dict()
    )


def test_causal_mask_detection_follows_hints_and_never_reads_values():
    """With a hint, torch's answer; without one, ember calls causal only a mask that
    generate_square_subsequent_mask made (torch compares values, which a graph would guard
    on): a hand-made causal mask is applied as given, with the same outputs."""
    from ember.nn.layers.transformer import _detect_is_causal_mask as ours
    from torch.nn.modules.transformer import _detect_is_causal_mask as torch_detect

    for mask in (CAUSAL_FLOAT, np.zeros((L, L)), np.where(ATTN_BOOL[:, :L], -np.inf, 0.0)):
        for hint in (True, False):
            expected = torch_detect(torch.tensor(mask), hint, L)
            assert ours(ember.tensor(mask), hint, L) == expected
        assert ours(ember.tensor(mask), None, L) is False
    made = ember.nn.Transformer.generate_square_subsequent_mask(L)
    assert ours(made, None, L) is True and ours(made, None, L + 1) is False
    enc = ember.nn.TransformerEncoder(ember.nn.TransformerEncoderLayer(E, HEADS, 16), 2).eval()
    src = ember.randn(L, 2, E)
    np.testing.assert_allclose(enc(src, mask=made).detach().numpy(),
                               enc(src, mask=ember.tensor(CAUSAL_FLOAT, dtype=ember.float32))
                               .detach().numpy(),
                               rtol=1e-5, atol=1e-6)


# -- whole models ------------------------------------------------------------------------------


def test_repr_of_nested_model_matches_torch_live():
    from test_module import EXPECTED_REPR, build_repr_model

    assert repr(build_repr_model(torch.nn)) == EXPECTED_REPR
    assert repr(build_repr_model(ember.nn)) == repr(build_repr_model(torch.nn))


def test_torch_state_dict_of_a_cnn_loads_and_runs_identically():
    def make(fw):
        nn = fw.nn
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding="same", groups=2),
            nn.GroupNorm(2, 6),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.0),
            nn.Linear(24, 5),
            nn.LogSoftmax(dim=1),
        )

    for dtype in ("float32", "float64"):
        for train in (True, False):
            ours, theirs = compare_with_torch(make, [randn(3, 1, 8, 8)], dtype, train)
            assert_close(ours[1].running_var, theirs[1].running_var, dtype, "running_var")


@pytest.mark.parametrize(
    ("name", "args", "fan_in"),
    [("Linear", (256, 128), 256), ("Conv2d", (16, 64, 3), 144), ("Conv1d", (8, 128, 5), 40)],
)
def test_default_initialisation_has_torch_statistics(name, args, fan_in):
    bound = 1 / math.sqrt(fan_in)
    stats = {}
    for fw in (torch, ember):
        fw.manual_seed(0)
        layer = getattr(fw.nn, name)(*args)
        w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
        assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(b).max() <= bound * (1 + 1e-6)
        stats[fw.__name__] = (np.abs(w).max(), w.std(), w.mean())
    # the same distribution: bounds agree closely, moments within sampling error
    (t_max, t_std, _), (e_max, e_std, e_mean) = stats["torch"], stats["ember"]
    assert e_max == pytest.approx(t_max, rel=0.01)
    assert e_std == pytest.approx(t_std, rel=0.03)
    assert abs(e_mean) < 6 * e_std / math.sqrt(np.prod(layer.weight.shape))
