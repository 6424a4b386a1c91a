"""Model definitions shared by the examples and benchmarks/train.py.

Each builder takes the framework (`ember` or `torch`) as an argument: ember's API is
PyTorch's, so the same code builds either, which is how the benchmarks compare like with like.
"""

from __future__ import annotations

import itertools


def mlp(fw, sizes=(784, 256, 256, 10)):
    """A ReLU multilayer perceptron."""
    nn = fw.nn
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def digits_cnn(fw, num_classes: int = 10):
    """A small CNN for 8x8 single-channel digit images."""
    nn = fw.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def char_transformer(
    fw, vocab_size: int, context: int = 64, d_model: int = 64, heads: int = 4, layers: int = 2
):
    """A tiny GPT-style model: token + position embeddings, causal encoder layers, a head."""
    nn = fw.nn

    class CharTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.context = context
            self.token = nn.Embedding(vocab_size, d_model)
            self.position = nn.Embedding(context, d_model)
            self.blocks = nn.ModuleList(
                [
                    nn.TransformerEncoderLayer(
                        d_model,
                        heads,
                        dim_feedforward=4 * d_model,
                        dropout=0.0,
                        batch_first=True,
                        norm_first=True,
                    )
                    for _ in range(layers)
                ]
            )
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab_size)

        def forward(self, idx):
            t = idx.shape[1]
            positions = fw.arange(t, device=idx.device)
            h = self.token(idx) + self.position(positions)
            mask = fw.triu(fw.full((t, t), float("-inf"), device=idx.device), diagonal=1)
            for block in self.blocks:
                h = block(h, src_mask=mask, is_causal=True)
            return self.head(self.norm(h))

    return CharTransformer()


def gpt(fw, vocab_size: int = 512, context: int = 64, d_model: int = 128, heads: int = 4,
        layers: int = 4):
    """nanoGPT's forward (benchmarks/training_steps.py's gpt, without the loss): token and
    position embeddings, pre-norm blocks of causal attention (one fused QKV projection) and a
    GELU MLP, a final norm and the head; the logits of every position."""
    nn = fw.nn
    F = nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.proj = nn.Linear(d_model, d_model)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(x).split(d_model, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(y.transpose(1, 2).reshape(b, t, c))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(d_model)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(d_model)
            self.fc = nn.Linear(d_model, 4 * d_model)
            self.out = nn.Linear(4 * d_model, d_model)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.out(F.gelu(self.fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Embedding(vocab_size, d_model)
            self.position = nn.Embedding(context, d_model)
            self.blocks = nn.ModuleList([Block() for _ in range(layers)])
            self.ln_f = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab_size, bias=False)

        def forward(self, idx):
            positions = fw.arange(idx.shape[1], device=idx.device)
            x = self.token(idx) + self.position(positions)
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    return GPT()
