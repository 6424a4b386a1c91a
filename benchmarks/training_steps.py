"""The four training steps benchmarks/models.py times, each written once over the framework
module (`build(torch)` with torch.nn, torch.optim, torch.nn.functional), so the same source
runs under torch and under ember; sizes are keyword arguments, TINY the ones --check uses."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field

import numpy as np


def _examples_models():
    # examples/models.py, loaded under its own name: this file is benchmarks/models.py
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "models.py")
    spec = importlib.util.spec_from_file_location("_ember_examples_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Workload:
    """A built model: make_step(wrap) is its training step with every module passed through
    wrap (identity, torch.compile or ember.script); batches are its argument tuples; carry,
    when not empty, is state appended to the arguments and returned after the losses."""

    make_step: object
    batches: list
    carry: tuple = ()
    label: str = ""
    modules: list = field(default_factory=list)


def gpt(torch, n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=512, batch=8):
    """nanoGPT (karpathy/nanoGPT model.py), dropout 0, biases on."""
    nn = torch.nn
    F = torch.nn.functional

    class LayerNorm(nn.Module):
        def __init__(self, ndim, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(ndim))
            self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

        def forward(self, input):
            return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.n_head = n_head
            self.n_embd = n_embd

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True
            )
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * n_embd, n_embd)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = LayerNorm(n_embd, bias=True)
            self.attn = CausalSelfAttention()
            self.ln_2 = LayerNorm(n_embd, bias=True)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(
                {
                    "wte": nn.Embedding(vocab_size, n_embd),
                    "wpe": nn.Embedding(block_size, n_embd),
                    "h": nn.ModuleList([Block() for _ in range(n_layer)]),
                    "ln_f": LayerNorm(n_embd, bias=True),
                }
            )
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # weight tying
            self.apply(self._init_weights)
            for pn, p in self.named_parameters():
                if pn.endswith("c_proj.weight"):
                    torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

        def _init_weights(self, module):
            if isinstance(module, nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets):
            device = idx.device
            _, t = idx.size()
            pos = torch.arange(0, t, dtype=torch.long, device=device)
            tok_emb = self.transformer.wte(idx)
            pos_emb = self.transformer.wpe(pos)
            x = tok_emb + pos_emb
            for block in self.transformer.h:
                x = block(x)
            x = self.transformer.ln_f(x)
            logits = self.lm_head(x)
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1
            )
            return logits, loss

        def configure_optimizers(self, weight_decay, learning_rate, betas):
            param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
            decay_params = [p for p in param_dict.values() if p.dim() >= 2]
            nodecay_params = [p for p in param_dict.values() if p.dim() < 2]
            optim_groups = [
                {"params": decay_params, "weight_decay": weight_decay},
                {"params": nodecay_params, "weight_decay": 0.0},
            ]
            return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)

    model = GPT()
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95))

    def make_step(wrap):
        net = wrap(model)

        def step(x, y):
            _logits, loss = net(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            return loss

        return step

    rng = np.random.default_rng(1)
    data = rng.integers(0, vocab_size, (4, batch, block_size + 1))
    batches = [(torch.tensor(d[:, :-1]), torch.tensor(d[:, 1:])) for d in data]
    return Workload(
        make_step, batches, label=f"GPT {n_layer}x{n_embd}, batch {batch}x{block_size}, AdamW"
    )


def dcgan(torch, nz=32, ngf=16, ndf=16, nc=3, batch=16):
    """The DCGAN example (pytorch/examples dcgan/main.py) at 32x32 images."""
    nn = torch.nn

    def weights_init(m):
        classname = m.__class__.__name__
        if classname.find("Conv") != -1:
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif classname.find("BatchNorm") != -1:
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),  # 4x4
                nn.BatchNorm2d(ngf * 4),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 8x8
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # 16x16
                nn.BatchNorm2d(ngf),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # 32x32
                nn.Tanh(),
            )

        def forward(self, input):
            return self.main(input)

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # 16x16
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # 8x8
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # 4x4
                nn.BatchNorm2d(ndf * 4),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
                nn.Sigmoid(),
            )

        def forward(self, input):
            return self.main(input)

    netG = Generator()
    netG.apply(weights_init)
    netD = Discriminator()
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_label = 1.0
    fake_label = 0.0

    def make_step(wrap):
        G = wrap(netG)
        D = wrap(netD)

        def step(real):
            # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
            D.zero_grad()
            b_size = real.size(0)
            label = torch.full((b_size,), real_label, dtype=real.dtype)
            output = D(real).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            noise = torch.randn(b_size, nz, 1, 1)
            fake = G(noise)
            label.fill_(fake_label)
            output = D(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            errD = errD_real + errD_fake
            optimizerD.step()
            # (2) update G: maximize log(D(G(z)))
            G.zero_grad()
            label.fill_(real_label)
            output = D(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            optimizerG.step()
            return errD, errG

        return step

    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (4, batch, nc, 32, 32)).astype(np.float32)
    return Workload(
        make_step,
        [(torch.tensor(x),) for x in images],
        label=f"DCGAN G+D 32x32, batch {batch}, 2x Adam",
    )


def lstm(torch, ntoken=1000, ninp=200, nhid=200, nlayers=2, seq=35, batch=20, dropout=0.2):
    """The word-level language model (pytorch/examples word_language_model), LSTM."""
    nn = torch.nn
    F = torch.nn.functional

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.ntoken = ntoken
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)
            self.nlayers = nlayers
            self.nhid = nhid
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output)
            return decoded.view(-1, self.ntoken), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            return (
                weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid),
            )

    model = RNNModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0)

    def make_step(wrap):
        net = wrap(model)

        def step(data, targets, h, c):
            hidden = (h.detach(), c.detach())  # repackage_hidden: truncated BPTT
            optimizer.zero_grad()
            output, hidden = net(data, hidden)
            loss = F.cross_entropy(output, targets.view(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.25)
            optimizer.step()
            return loss, hidden

        return step

    rng = np.random.default_rng(3)
    corpus = rng.integers(0, ntoken, (4, seq + 1, batch))
    batches = [(torch.tensor(d[:-1]), torch.tensor(d[1:])) for d in corpus]
    return Workload(
        make_step,
        batches,
        carry=model.init_hidden(batch),
        label=f"LSTM LM 2x{nhid}, seq {seq} x batch {batch}, SGD",
    )


def cnn(torch, batch=64):
    """The digits CNN of examples/models.py (benchmarks/train.py's), Adam."""
    F = torch.nn.functional
    model = _examples_models().digits_cnn(torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def make_step(wrap):
        net = wrap(model)

        def step(x, y):
            output = net(x)
            loss = F.cross_entropy(output, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss

        return step

    rng = np.random.default_rng(4)
    batches = [
        (
            torch.tensor(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)),
            torch.tensor(rng.integers(0, 10, batch)),
        )
        for _ in range(4)
    ]
    return Workload(make_step, batches, label=f"digits CNN 8x8, batch {batch}, Adam")


BUILDERS = {"gpt": gpt, "dcgan": dcgan, "lstm": lstm, "cnn": cnn}
TINY = {
    "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8, "vocab_size": 32, "batch": 2},
    "dcgan": {"nz": 4, "ngf": 2, "ndf": 2, "batch": 2},
    "lstm": {"ntoken": 20, "ninp": 8, "nhid": 8, "seq": 5, "batch": 2},
    "cnn": {"batch": 4},
}
