"""A scripted forward that writes buffers (BatchNorm's running statistics, num_batches_tracked)
still runs under autograd as one compiled forward + compiled backward: the writes come back as
graph outputs and are written back after the forward, and values, gradients and statistics
equal eager's over several steps."""

import copy

import ember
import numpy as np
import pytest
from ember import autograd, nn

BATCH_NORMS = [
    ("BatchNorm1d", (6, 4)),
    ("BatchNorm1d", (5, 4, 3)),
    ("BatchNorm2d", (4, 4, 3, 2)),
    ("BatchNorm3d", (3, 4, 2, 3, 2)),
]
STATS = ("running_mean", "running_var", "num_batches_tracked")


def _array(shape, seed, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def _close(a, b, what):
    a = a.detach().numpy() if isinstance(a, ember.Tensor) else a
    b = b.detach().numpy() if isinstance(b, ember.Tensor) else b
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


def _step(net, x_array, weights):
    """One forward and backward: (the output, the input's gradient)."""
    x = ember.tensor(x_array, requires_grad=True)
    out = net(x)
    (out * ember.tensor(weights)).sum().backward()
    return out, x.grad


def _compare_steps(eager, model, scripted, shape, seeds):
    for seed in seeds:
        x = _array(shape, seed, scale=seed + 1.0, shift=seed)
        weights = _array(shape, seed + 100)
        for net in (eager, model):
            net.zero_grad()
        out_e, gx_e = _step(eager, x, weights)
        out_s, gx_s = _step(scripted, x, weights)
        _close(out_s, out_e, f"output at step {seed}")
        _close(gx_s, gx_e, f"input gradient at step {seed}")
        for (name, p), q in zip(model.named_parameters(), eager.parameters()):
            _close(p.grad, q.grad, f"{name}.grad at step {seed}")
        for name, buffer in eager.named_buffers():
            _close(dict(model.named_buffers())[name], buffer, f"{name} after step {seed}")
    return out_s


@pytest.mark.parametrize(("layer", "shape"), BATCH_NORMS)
@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
     {"momentum": 0.3, "affine": False}],
    ids=["default", "cumulative", "no_affine", "untracked", "no_affine_momentum"],
)
def test_batchnorm_trains_and_evaluates_as_a_compiled_forward_and_backward(layer, shape,
                                                                           options):
    ember.manual_seed(0)
    eager = getattr(nn, layer)(shape[1], **options)
    if eager.weight is not None:
        with ember.no_grad():  # weights other than ones and zeros, so their role shows
            eager.weight.copy_(ember.tensor(_array(shape[1], 7, shift=1.0)))
            eager.bias.copy_(ember.tensor(_array(shape[1], 8)))
    model = copy.deepcopy(eager)
    scripted = ember.script(model)
    out = _compare_steps(eager, model, scripted, shape, range(4))
    assert out.grad_fn is not None and out.grad_fn.name() == "CompiledFunctionBackward"
    assert len(scripted.specializations) == 1 and not scripted.recompiles
    assert scripted.specializations[0].split is not None
    assert scripted.specializations[0].calls == 3
    if eager.track_running_stats:
        assert model.num_batches_tracked.item() == 4
        assert not model.running_mean.requires_grad and model.running_mean.grad_fn is None
    # eval mode: the running statistics (or the batch's, untracked) are read, not written
    eager.eval()
    scripted.eval()
    out = _compare_steps(eager, model, scripted, shape, range(10, 13))
    assert out.grad_fn.name() == "CompiledFunctionBackward"
    if eager.track_running_stats:
        assert model.num_batches_tracked.item() == 4
    assert scripted.specializations[-1].split is not None


def test_a_discriminator_called_twice_in_one_step_updates_its_statistics_twice():
    """DCGAN's discriminator runs on the real batch, then on the generator's fakes."""

    def networks():
        ember.manual_seed(3)
        generator = nn.Sequential(nn.Linear(5, 3 * 6 * 6), nn.Unflatten(1, (3, 6, 6)),
                                  nn.BatchNorm2d(3), nn.Tanh())
        discriminator = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                                      nn.Flatten(), nn.Linear(4 * 4 * 4, 1), nn.Sigmoid())
        return generator, discriminator

    eager_g, eager_d = networks()
    model_g, model_d = networks()
    scripted_g, scripted_d = ember.script(model_g), ember.script(model_d)
    bce = nn.BCELoss()
    for step in range(4):
        real = _array((6, 3, 6, 6), step)
        noise = _array((6, 5), step + 50)
        losses = []
        for g, d in ((eager_g, eager_d), (scripted_g, scripted_d)):
            d.zero_grad()
            g.zero_grad()
            out_real = d(ember.tensor(real))
            fake = g(ember.tensor(noise))
            out_fake = d(fake)
            loss = (bce(out_real, ember.ones(6, 1)) + bce(out_fake, ember.zeros(6, 1)))
            loss.backward()
            losses.append(loss.item())
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5, err_msg=f"step {step}")
        for eager, model in ((eager_g, model_g), (eager_d, model_d)):
            for (name, p), q in zip(model.named_parameters(), eager.parameters()):
                _close(p.grad, q.grad, f"{name}.grad at step {step}")
            for (name, b), c in zip(model.named_buffers(), eager.buffers()):
                _close(b, c, f"{name} after step {step}")
    assert model_d[1].num_batches_tracked.item() == 8
    assert model_g[2].num_batches_tracked.item() == 4
    # on real data (no grad in) and on fakes (grad in): both compiled forward + backward
    assert [sp.split is not None for sp in scripted_d.specializations] == [True, True]
    assert sum(sp.calls for sp in scripted_d.specializations) == 6
    assert scripted_g.specializations[0].split is not None


class ShiftedTanh(nn.Module):
    """tanh(x + shift), then shift += 1 under no_grad: the result depends on the buffer's
    value before the write, but no derivative reads the buffer itself."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", ember.tensor(_array(4, 1)))

    def forward(self, x):
        out = (x + self.shift).tanh()
        with ember.no_grad():
            self.shift.add_(1.0)
        return out


def test_higher_order_gradients_recompute_with_the_buffer_as_it_was_before_the_write():
    eager = ShiftedTanh()
    model = copy.deepcopy(eager)
    scripted = ember.script(model)
    for step in range(3):
        grads = []
        for net in (eager, scripted):
            x = ember.tensor(_array((3, 4), step) * 0.3, requires_grad=True)
            (gx,) = autograd.grad(net(x).sum(), x, create_graph=True)
            (gxx,) = autograd.grad((gx * gx).sum(), x)
            grads.append((gx, gxx))
        _close(grads[1][0], grads[0][0], f"first-order gradient at step {step}")
        _close(grads[1][1], grads[0][1], f"second-order gradient at step {step}")
        _close(model.shift, eager.shift, f"buffer after step {step}")
    assert scripted.specializations[0].split is not None
    assert scripted.specializations[0].calls == 2


class WritesItsInput(nn.Module):
    """Doubles its (non-leaf) input in place, an in-place write autograd must record."""

    def forward(self, x):
        x.mul_(2.0)
        return x * 3.0


def test_a_write_that_autograd_must_record_keeps_the_op_by_op_replay():
    scripted = ember.script(WritesItsInput())
    for step in range(3):
        grads = []
        for net in (WritesItsInput(), scripted):
            leaf = ember.tensor(_array((2, 3), step), requires_grad=True)
            hidden = leaf * 1.0
            out = net(hidden)
            out.sum().backward()
            grads.append((out, hidden, leaf.grad))
        for got, want, what in zip(grads[1], grads[0], ("output", "written input", "grad")):
            _close(got, want, f"{what} at step {step}")
    assert scripted.specializations[0].split is None
    assert scripted.specializations[0].calls == 2
