"""Every graph capture produces is well-formed IR: the verifier accepts it, and its text parses
back (ir.parser.parse_graph) to a graph that prints the same and verifies too."""

import ember
import numpy as np
import pytest
from ember import autograd, nn
from ember.ir.parser import parse_graph
from ember.ir.verify import verify


def _t(*shape, dtype=np.float32, requires_grad=False, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ember.tensor(data, requires_grad=requires_grad)


def _elementwise(x, y):
    return ((x * 2 - y).tanh() + (x / (y * y + 1)).sigmoid()).relu()


def _reductions(x):
    return x.sum(dim=1, keepdim=True) - x.mean(dim=0), x.amax(dim=1), x.var(dim=0)


def _views(x):
    return x.t()[1:, ::2].reshape(-1).unsqueeze(0).expand(3, -1) * 1.5


def _indexing(x, idx):
    return x[idx % x.shape[0]], x[:, ember.tensor([0, 2])], x.gather(1, idx[:2].reshape(2, 1))


def _inplace(x, buf):
    h = x.clone()
    h.mul_(0.5).add_(1.0)
    buf.add_(h.sum(dim=0))
    return h


def _matmul(x, w):
    return nn.functional.softmax(x @ w, dim=-1)


def _casts_and_comparisons(x):
    mask = (x > 0).float()
    return ember.where(x > 0.5, x, -x) * mask + x.long().double().float()


def _value_reads(x):
    if x.sum() > -100:
        return x * int(x.abs().max() > 0) + float(x.mean())
    return x


def _detach_and_no_grad(x):
    with ember.no_grad():
        scale = x.abs().sum()
    return x * scale + x * x.detach()


def _autograd_grad_inside(x):
    (g,) = autograd.grad((x * x * x).sum(), x, create_graph=True)
    return (g * g).sum()


def _functional(x):
    F = nn.functional
    return F.log_softmax(F.gelu(x), dim=-1), F.layer_norm(x, (x.shape[-1],))


def _loss(x, target):
    return nn.functional.cross_entropy(x, target)


def _graphs(fn, *args, calls: int = 2):
    scripted = ember.script(fn)
    for _ in range(calls):
        scripted(*args)
    assert scripted.graphs, scripted.explain()
    return scripted.graphs


def _module_graphs(module, x, calls: int = 2):
    scripted = ember.script(module)
    for _ in range(calls):
        scripted(x)
    scripted.eval()
    with ember.no_grad():
        scripted(x)
    return scripted.graphs


def _mlp():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Dropout(0.2), nn.Linear(8, 3))
    return _module_graphs(model, _t(5, 4))


def _batchnorm():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
    return _module_graphs(model, _t(8, 4))


def _conv():
    ember.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
    )
    return _module_graphs(model, _t(2, 2, 6, 6))


def _layer_norm_and_embedding():
    ember.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.norm = nn.LayerNorm(4)

        def forward(self, idx):
            return self.norm(self.embed(idx)).sum(dim=1)

    return _module_graphs(Net(), ember.tensor([[1, 2, 3], [4, 5, 9]]))


CASES = {
    "elementwise": lambda: _graphs(_elementwise, _t(3, 4), _t(4, seed=1)),
    "elementwise_grad": lambda: _graphs(_elementwise, _t(3, 4, requires_grad=True), _t(4)),
    "reductions": lambda: _graphs(_reductions, _t(3, 4)),
    "views": lambda: _graphs(_views, _t(3, 4)),
    "indexing": lambda: _graphs(_indexing, _t(3, 4), ember.tensor([2, 0, 5, 1])),
    "inplace": lambda: _graphs(_inplace, _t(3, 4), ember.zeros(4)),
    "matmul": lambda: _graphs(_matmul, _t(3, 4), _t(4, 5, seed=1)),
    "casts": lambda: _graphs(_casts_and_comparisons, _t(3, 4)),
    "value_reads": lambda: _graphs(_value_reads, _t(3, 4)),
    "detach_no_grad": lambda: _graphs(
        _detach_and_no_grad, _t(3, dtype=np.float64, requires_grad=True)
    ),
    "autograd_grad": lambda: _graphs(
        _autograd_grad_inside, _t(3, dtype=np.float64, requires_grad=True)
    ),
    "functional": lambda: _graphs(_functional, _t(3, 5)),
    "cross_entropy": lambda: _graphs(
        _loss, _t(4, 3, requires_grad=True), ember.tensor([0, 2, 1, 2])
    ),
    "mlp_module": _mlp,
    "batchnorm_module": _batchnorm,
    "conv_module": _conv,
    "embedding_layernorm_module": _layer_norm_and_embedding,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_captured_graphs_verify_and_round_trip_through_text(case):
    graphs = CASES[case]()
    for graph in graphs:
        verify(graph)
        text = str(graph)
        parsed = parse_graph(text)
        assert str(parsed) == text
        verify(parsed)
        assert len(parsed.nodes) == len(graph.nodes)
        assert [v.type for v in parsed.outputs] == [v.type for v in graph.outputs]
