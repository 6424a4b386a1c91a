"""nn.Module bookkeeping: registration, traversal names, modes, conversion, state, hooks, repr."""

import copy
import pickle
from collections import OrderedDict

import ember
import numpy as np
import pytest
from ember import nn


class Affine(nn.Module):
    """y = x * scale + shift, with a persistent and a non-persistent buffer."""

    def __init__(self, n: int = 3):
        super().__init__()
        self.scale = nn.Parameter(ember.ones(n))
        self.shift = nn.Parameter(ember.zeros(n))
        self.register_buffer("calls", ember.zeros((), dtype="int64"))
        self.register_buffer("cache", ember.zeros(n), persistent=False)
        self.not_a_param = ember.ones(2)  # a plain tensor attribute is neither

    def forward(self, x):
        return x * self.scale + self.shift


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = Affine()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
        self.norm = nn.BatchNorm1d(3)
        self.head = nn.ModuleDict({"out": nn.Linear(3, 2)})
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.head["out"](self.drop(self.norm(self.body(self.first(x)))))


def _numpy(t):
    return t.detach().numpy()


# -- registration ------------------------------------------------------------------------------


def test_assignment_registers_parameters_buffers_and_modules():
    m = Affine()
    assert list(m._parameters) == ["scale", "shift"]
    assert list(m._buffers) == ["calls", "cache"]
    assert "not_a_param" not in m._parameters and "not_a_param" not in m._buffers
    net = Net()
    assert list(net._modules) == ["first", "body", "norm", "head", "drop"]
    assert net.first is net._modules["first"]


def test_reassigning_a_child_parameter_or_buffer_keeps_its_position():
    # torchvision users replace resnet.conv1 and then drop the last child: the order matters
    net = Net()
    net.first = nn.Linear(3, 3)
    assert list(net._modules) == ["first", "body", "norm", "head", "drop"]
    assert [type(m) for m in list(net.children())[:-1]][0] is nn.Linear
    m = Affine()
    m.scale = nn.Parameter(ember.full((3,), 2.0))
    m.calls = nn.Buffer(ember.ones((), dtype="int64"))
    assert list(m._parameters) == ["scale", "shift"]
    assert list(m._buffers) == ["calls", "cache"]
    assert list(m.state_dict()) == ["scale", "shift", "calls"]


def test_buffer_wrapper_and_persistence():
    m = nn.Module()
    m.kept = nn.Buffer(ember.ones(2))
    m.temp = nn.Buffer(ember.zeros(2), persistent=False)
    assert dict(m.named_buffers()).keys() == {"kept", "temp"}
    assert list(m.state_dict()) == ["kept"]
    m.register_buffer("temp", ember.ones(1), persistent=True)
    assert list(m.state_dict()) == ["kept", "temp"]


def test_registration_errors():
    m = nn.Module()
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", nn.Parameter(ember.ones(1)))
    with pytest.raises(KeyError, match="empty"):
        m.register_buffer("", ember.ones(1))
    with pytest.raises(TypeError, match="Parameter or None"):
        m.register_parameter("w", ember.ones(1))
    m.plain = 3
    with pytest.raises(KeyError, match="already exists"):
        m.register_parameter("plain", nn.Parameter(ember.ones(1)))
    m.w = nn.Parameter(ember.ones(1))
    with pytest.raises(TypeError, match="cannot assign"):
        m.w = ember.ones(1)

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ember.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_none_entries_and_deletion():
    m = nn.Linear(3, 2, bias=False)
    assert m.bias is None and "bias" in m._parameters
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    m.weight = None
    assert list(m.parameters()) == []
    del m.weight
    assert "weight" not in m._parameters
    with pytest.raises(AttributeError):
        m.weight  # noqa: B018


# -- traversal ---------------------------------------------------------------------------------


def test_named_parameters_and_buffers_use_dotted_prefixes():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "first.scale",
        "first.shift",
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
        "body.2.bias",
        "norm.weight",
        "norm.bias",
        "head.out.weight",
        "head.out.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "first.calls",
        "first.cache",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    ]
    assert [n for n, _ in net.body.named_parameters(prefix="model")][:2] == [
        "model.0.weight",
        "model.0.bias",
    ]
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert len(list(net.parameters())) == 10


def test_named_modules_and_children():
    net = Net()
    assert [n for n, _ in net.named_modules()] == [
        "",
        "first",
        "body",
        "body.0",
        "body.1",
        "body.2",
        "norm",
        "head",
        "head.out",
        "drop",
    ]
    assert [n for n, _ in net.named_children()] == ["first", "body", "norm", "head", "drop"]
    assert list(net.children())[1] is net.body
    assert net.get_submodule("head.out") is net.head["out"]
    assert net.get_parameter("body.2.bias") is net.body[2].bias


def test_shared_modules_and_parameters_are_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    all_names = [n for n, _ in seq.named_parameters(remove_duplicate=False)]
    assert all_names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    # state_dict keeps every path, as PyTorch's does
    assert list(seq.state_dict()) == all_names


# -- modes and conversion ----------------------------------------------------------------------


def test_train_and_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.body.train()
    assert net.body[0].training and not net.training and not net.norm.training
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError):
        net.train("no")


def test_dropout_follows_the_mode():
    ember.manual_seed(0)
    drop = nn.Dropout(0.5)
    x = ember.ones(1000)
    assert (_numpy(drop(x)) == 0).any()
    drop.eval()
    np.testing.assert_array_equal(_numpy(drop(x)), np.ones(1000))


def test_zero_grad_sets_to_none_or_zero():
    net = Net()
    net(ember.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not _numpy(p.grad).any() for p in net.parameters())
    net(ember.randn(4, 3)).sum().backward()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_dtype_converts_floats_in_place_and_keeps_integer_buffers():
    net = Net()
    params = list(net.parameters())
    out = net.to(ember.float64)
    assert out is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == ember.float64 and isinstance(p, nn.Parameter) for p in params)
    assert all(p.requires_grad for p in params)
    assert net.norm.running_mean.dtype == ember.float64
    assert net.norm.num_batches_tracked.dtype == ember.int64
    assert net.first.calls.dtype == ember.int64
    assert net(ember.randn(2, 3, dtype="float64")).dtype == ember.float64
    net.float()
    assert all(p.dtype == ember.float32 for p in net.parameters())
    net.double()
    assert net.first.cache.dtype == ember.float64


def test_apply_visits_children_before_parents():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Tanh()))
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Linear", "ReLU", "Tanh", "Sequential", "Sequential"]

    def reset(m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    net.apply(reset)
    assert not _numpy(net[0].weight).any()


def test_requires_grad_toggles_every_parameter():
    net = Net()
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    out = net(ember.randn(2, 3))
    assert not out.requires_grad
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())


# -- state -------------------------------------------------------------------------------------


def test_state_dict_lists_parameters_then_persistent_buffers_per_module():
    sd = Net().state_dict()
    assert list(sd)[:3] == ["first.scale", "first.shift", "first.calls"]
    assert "first.cache" not in sd
    assert list(sd)[-7:] == [
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
        "head.out.weight",
        "head.out.bias",
    ]
    assert all(not t.requires_grad for t in sd.values())
    kept = Net().state_dict(keep_vars=True)
    assert isinstance(kept["body.0.weight"], nn.Parameter)


def test_state_dict_round_trip_restores_outputs():
    ember.manual_seed(0)
    a, b = Net(), Net()
    a.train()
    a(ember.randn(8, 3))  # moves a's running statistics
    a.eval()
    b.eval()
    x = ember.randn(5, 3)
    assert not np.allclose(_numpy(a(x)), _numpy(b(x)))
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    np.testing.assert_array_equal(_numpy(a(x)), _numpy(b(x)))
    assert b.norm.num_batches_tracked.item() == 1
    # loading copies values: the two models do not share storage afterwards
    with ember.no_grad():
        a.first.scale.fill_(5.0)
    assert _numpy(b.first.scale)[0] == 1.0


def test_state_dict_survives_pickle_and_deepcopy():
    net = Net()
    clone = copy.deepcopy(net)
    restored = pickle.loads(pickle.dumps(net.state_dict()))
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(_numpy(restored[key]), _numpy(value))
        np.testing.assert_array_equal(_numpy(clone.state_dict()[key]), _numpy(value))
    assert clone.first.scale is not net.first.scale


def test_strict_load_reports_every_problem_at_once():
    net = Net()
    sd = net.state_dict()
    del sd["first.shift"]
    del sd["norm.running_var"]
    sd["extra.weight"] = ember.ones(1)
    sd["body.0.weight"] = ember.ones(5, 5)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    message = str(info.value)
    assert "Error(s) in loading state_dict for Net" in message
    assert 'Missing key(s) in state_dict: "first.shift", "norm.running_var"' in message
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in message
    assert "size mismatch for body.0.weight" in message
    assert "[5, 5]" in message and "[4, 3]" in message


def test_non_strict_load_returns_the_key_lists():
    net = Net()
    before = _numpy(net.first.shift).copy()
    sd = net.state_dict()
    sd = OrderedDict((k, v.clone()) for k, v in sd.items() if k != "first.shift")
    sd["first.scale"] = ember.full((3,), 2.0)
    sd["stray"] = ember.ones(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["first.shift"]
    assert result.unexpected_keys == ["stray"]
    np.testing.assert_array_equal(_numpy(net.first.scale), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(_numpy(net.first.shift), before)
    sd["first.scale"] = ember.ones(4)
    with pytest.raises(RuntimeError, match="size mismatch for first.scale"):
        net.load_state_dict(sd, strict=False)


# -- hooks -------------------------------------------------------------------------------------


def test_forward_pre_hook_can_replace_the_input_and_be_removed():
    m = Affine()
    x = ember.ones(3)
    seen = []

    def pre(module, args):
        seen.append((module, len(args)))
        return args[0] * 2  # a single value is wrapped into the args tuple

    handle = m.register_forward_pre_hook(pre)
    np.testing.assert_array_equal(_numpy(m(x)), [2.0, 2.0, 2.0])
    assert seen == [(m, 1)]
    handle.remove()
    np.testing.assert_array_equal(_numpy(m(x)), [1.0, 1.0, 1.0])
    assert len(seen) == 1


def test_forward_hook_sees_input_and_output_and_can_replace_output():
    m = Affine()
    x = ember.ones(3)
    record = {}

    def observe(module, args, output):
        record["args"], record["output"] = args, output

    def replace(module, args, output):
        return output + 10

    h1 = m.register_forward_hook(observe)
    h2 = m.register_forward_hook(replace)
    out = m(x)
    assert record["args"][0] is x
    np.testing.assert_array_equal(_numpy(record["output"]), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(_numpy(out), [11.0, 11.0, 11.0])
    h2.remove()
    np.testing.assert_array_equal(_numpy(m(x)), [1.0, 1.0, 1.0])
    with h1:
        pass  # a handle used as a context manager removes its hook on exit
    record.clear()
    m(x)
    assert record == {}


def test_hooks_run_in_registration_order_on_nested_modules():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    order = []
    for name, module in net.named_modules():
        module.register_forward_pre_hook(lambda m, a, name=name: order.append("pre " + name))
        module.register_forward_hook(lambda m, a, o, name=name: order.append("post " + name))
    net(ember.randn(2, 3))
    assert order == ["pre ", "pre 0", "post 0", "pre 1", "post 1", "post "]


# -- repr --------------------------------------------------------------------------------------

# torch 2.13 prints this model exactly so (see test_layers_oracle.py for the live comparison)
EXPECTED_REPR = """\
Sequential(
  (0): Block(
    (conv): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    (bn): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    (act): ReLU()
    (extra): None
  )
  (1): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (2): Flatten(start_dim=1, end_dim=-1)
  (3): ModuleDict(
    (head): Linear(in_features=128, out_features=10, bias=True)
    (aux): Sequential(
      (0): Dropout(p=0.1, inplace=False)
      (1): Linear(in_features=128, out_features=2, bias=False)
    )
  )
  (4): ModuleList(
    (0-1): 2 x GELU(approximate='tanh')
    (2): LeakyReLU(negative_slope=0.2)
  )
  (5): Embedding(10, 4, padding_idx=0)
  (6): LayerNorm((4, 5), eps=1e-05, elementwise_affine=False, bias=False)
  (7): GroupNorm(2, 8, eps=1e-05, affine=True, bias=True)
  (8): Softmax(dim=-1)
  (9): Identity()
  (10): TransformerEncoder(
    (layers): ModuleList(
      (0-1): 2 x TransformerEncoderLayer(
        (self_attn): MultiheadAttention(
          (out_proj): NonDynamicallyQuantizableLinear(in_features=8, out_features=8, bias=True)
        )
        (linear1): Linear(in_features=8, out_features=16, bias=True)
        (dropout): Dropout(p=0.1, inplace=False)
        (linear2): Linear(in_features=16, out_features=8, bias=True)
        (norm1): LayerNorm((8,), eps=1e-05, elementwise_affine=True, bias=True)
        (norm2): LayerNorm((8,), eps=1e-05, elementwise_affine=True, bias=True)
        (dropout1): Dropout(p=0.1, inplace=False)
        (dropout2): Dropout(p=0.1, inplace=False)
      )
    )
  )
)"""


def build_repr_model(nn):
    """The model of EXPECTED_REPR, built from the nn namespace given (ember's or torch's)."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.act = nn.ReLU()
            self.register_module("extra", None)

    return nn.Sequential(
        Block(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.ModuleDict(
            {
                "head": nn.Linear(8 * 16, 10),
                "aux": nn.Sequential(nn.Dropout(0.1), nn.Linear(128, 2, bias=False)),
            }
        ),
        nn.ModuleList(
            [nn.GELU(approximate="tanh"), nn.GELU(approximate="tanh"), nn.LeakyReLU(0.2)]
        ),
        nn.Embedding(10, 4, padding_idx=0),
        nn.LayerNorm((4, 5), elementwise_affine=False),
        nn.GroupNorm(2, 8),
        nn.Softmax(dim=-1),
        nn.Identity(),
        nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, enable_nested_tensor=False
        ),
    )


def test_repr_of_nested_model_matches_pytorch():
    assert repr(build_repr_model(nn)) == EXPECTED_REPR


def test_repr_of_leaf_and_empty_modules():
    assert repr(nn.Sequential()) == "Sequential()"
    assert repr(nn.ModuleList()) == "ModuleList()"
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.Conv1d(4, 6, 3, stride=2, groups=2, padding=1)) == (
        "Conv1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,), groups=2)"
    )
    assert repr(nn.Conv2d(2, 2, 3, padding="same", padding_mode="reflect", dilation=2)) == (
        "Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), padding=same, dilation=(2, 2), "
        "padding_mode=reflect)"
    )
    assert repr(nn.BatchNorm1d(4, momentum=None, affine=False, track_running_stats=False)) == (
        "BatchNorm1d(4, eps=1e-05, momentum=None, affine=False, bias=False, "
        "track_running_stats=False)"
    )
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_print_of_a_parameter_says_parameter_containing():
    p = nn.Parameter(ember.tensor([1.0, 2.0]))
    assert str(p) == repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
