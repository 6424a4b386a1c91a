"""A tiny GPT-style character model, trained on Shakespeare's sonnets, then sampled.

Token and position embeddings, causal TransformerEncoderLayers (pre-norm multi-head
attention), AdamW with a cosine schedule and gradient clipping; the text ships with the
repository (examples/data/sonnets.txt), so nothing is downloaded.

    python examples/char_transformer.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import ember
from ember.nn import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from models import char_transformer

CONTEXT = 64
BATCH = 16


def load_text() -> str:
    with open(os.path.join(HERE, "data", "sonnets.txt"), encoding="utf-8") as f:
        return f.read()


def batches(data: ember.Tensor, generator_seed: int):
    """Random (input, next-character target) windows of CONTEXT characters."""
    ember.manual_seed(generator_seed)
    while True:
        starts = ember.randint(0, len(data) - CONTEXT - 1, (BATCH,))
        offsets = ember.arange(CONTEXT)
        idx = starts[:, None] + offsets[None, :]
        yield data[idx], data[idx + 1]


@ember.no_grad()
def sample(model, prompt: str, stoi: dict, itos: list, length: int, temperature: float = 0.8):
    model.eval()
    tokens = [stoi[c] for c in prompt]
    for _ in range(length):
        context = ember.tensor([tokens[-CONTEXT:]])
        logits = model(context)[0, -1] / temperature
        probs = F.softmax(logits, dim=-1)
        # inverse-CDF sampling from the seeded generator
        u = ember.rand(1).item()
        cumulative = probs.cumsum(0)
        tokens.append(min(int((cumulative < u).sum().item()), len(itos) - 1))
    return "".join(itos[t] for t in tokens)


def train(steps: int, seed: int = 0, verbose: bool = True) -> tuple[float, str]:
    """Train for `steps` steps; returns (final average loss, a sampled text)."""
    text = load_text()
    itos = sorted(set(text))
    stoi = {c: i for i, c in enumerate(itos)}
    data = ember.tensor([stoi[c] for c in text])
    ember.manual_seed(seed)
    model = char_transformer(ember, len(itos), context=CONTEXT)
    optimizer = ember.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = ember.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    stream = batches(data, seed + 1)
    start, recent = time.perf_counter(), []
    model.train()
    for step in range(1, steps + 1):
        x, y = next(stream)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, len(itos)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        ember.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        if verbose and (step % 100 == 0 or step == steps):
            print(
                f"step {step:4d}  loss {sum(recent) / len(recent):.3f}  "
                f"({time.perf_counter() - start:.0f} s)"
            )
    ember.manual_seed(seed + 2)
    return sum(recent) / len(recent), sample(model, "Shall I ", stoi, itos, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    loss, text = train(args.steps)
    print(f"\nfinal loss {loss:.3f}; a sample:\n\n{text}\n")
    # a uniform guess over the ~60 characters costs ln(60) = 4.1 nats
    assert loss < 1.6, f"the model did not learn: loss {loss:.3f}"


if __name__ == "__main__":
    main()
