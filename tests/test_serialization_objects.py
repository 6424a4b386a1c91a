"""ember.save of whole objects (torch.save(model, f)) and ember.load's allow-list: objects come
back of the allowed classes only, with their attributes, tied tensors still tied, and a file
naming anything else is refused before any object is made."""

from __future__ import annotations

import argparse
import io
import json

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn, serialization


class TinyLM(nn.Module):
    """A language model as public examples write one: tied weights, a set, a function."""

    def __init__(self, vocab=11, width=6):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.head.weight = self.embed.weight
        self.activation = F.gelu
        self.model_type = "tiny"
        self.register_buffer("scale", ember.tensor(2.0))

    def forward(self, idx):
        return self.head(self.activation(self.norm(self.embed(idx))) * self.scale)


class Built:
    """Its __init__ must never run on load."""

    made = 0

    def __init__(self):
        Built.made += 1
        self.value = 3


class CustomNew:
    def __new__(cls):
        return super().__new__(cls)


CLASSES = [TinyLM, nn.Embedding, nn.LayerNorm, nn.Linear, F.gelu]


def _save(obj) -> bytes:
    buffer = io.BytesIO()
    ember.save(obj, buffer)
    return buffer.getvalue()


def _load(blob: bytes, **kwargs):
    return ember.load(io.BytesIO(blob), **kwargs)


def _with_structure(blob: bytes, change) -> bytes:
    """blob with change(structure) applied to its structure metadata (header re-padded)."""
    header, structure = _structure(blob)
    change(structure)
    header["__metadata__"]["structure"] = json.dumps(structure)
    n = int.from_bytes(blob[:8], "little")
    raw = json.dumps(header).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    return len(raw).to_bytes(8, "little") + raw + blob[8 + n:]


def _structure(blob: bytes) -> dict:
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    return header, json.loads(header["__metadata__"]["structure"])


def test_a_whole_model_round_trips_with_its_classes_allowed():
    ember.manual_seed(0)
    model = TinyLM()
    model.eval()
    blob = _save(model)
    with serialization.safe_globals(CLASSES):
        loaded = _load(blob)
    assert type(loaded) is TinyLM and type(loaded.head) is nn.Linear
    assert loaded.activation is F.gelu and loaded.model_type == "tiny"
    assert loaded.training is False
    assert loaded.head.weight is loaded.embed.weight  # still tied: one parameter
    assert isinstance(loaded.embed.weight, nn.Parameter) and loaded.embed.weight.requires_grad
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert set(loaded.state_dict()) == set(model.state_dict())
    idx = ember.tensor([[1, 2, 3], [4, 5, 10]])
    np.testing.assert_array_equal(loaded(idx).detach().numpy(), model(idx).detach().numpy())
    # it trains: the tied weight gets one gradient from both of its uses
    loaded(idx).sum().backward()
    model(idx).sum().backward()
    np.testing.assert_allclose(loaded.embed.weight.grad.numpy(), model.embed.weight.grad.numpy(),
                               rtol=1e-6)
    assert serialization.get_safe_globals() == []  # the block's list is gone after it


def test_saving_is_deterministic_and_a_plain_checkpoint_stays_version_1():
    ember.manual_seed(0)
    model = TinyLM()
    assert _save(model) == _save(model)
    header, _ = _structure(_save(model))
    assert header["__metadata__"]["version"] == "2"
    plain = {"w": ember.ones(2), "n": [1, 2.5, "x"]}
    header, _ = _structure(_save(plain))
    assert header["__metadata__"]["version"] == "1"
    # one tensor in two places: a reference, loaded as one tensor
    w = ember.randn(3)
    header, structure = _structure(_save({"a": w, "b": w}))
    assert header["__metadata__"]["version"] == "2"
    loaded = _load(_save({"a": w, "b": w}))
    assert loaded["a"] is loaded["b"]


def test_a_class_that_is_not_allowed_is_refused_and_nothing_is_made():
    blob = _save({"model": TinyLM()})
    with pytest.raises(serialization.CheckpointError,
                       match=r"holds .*TinyLM, which is not an allowed class.*add_safe_globals"):
        _load(blob)
    # allowing the model but not a layer class it holds still refuses
    with serialization.safe_globals([TinyLM]), pytest.raises(
            serialization.CheckpointError, match="Embedding"):
        _load(blob)
    Built.made = 0
    built_blob = _save([Built()])
    assert Built.made == 1
    with pytest.raises(serialization.CheckpointError, match="Built"):
        _load(built_blob)
    serialization.add_safe_globals([Built])
    try:
        (obj,) = _load(built_blob)
    finally:
        serialization.clear_safe_globals()
    assert type(obj) is Built and obj.value == 3 and Built.made == 1  # no __init__ ran


def test_weights_only_false_takes_classes_already_imported():
    blob = _save({"args": argparse.Namespace(lr=0.5, name="run"), "model": TinyLM()})
    with pytest.raises(serialization.CheckpointError, match="Namespace"):
        _load(blob, weights_only=True)
    loaded = _load(blob, weights_only=False)
    assert loaded["args"] == argparse.Namespace(lr=0.5, name="run")
    assert type(loaded["model"]) is TinyLM


def test_hostile_object_structures_are_refused():
    def tampered(change):
        blob = _save({"args": argparse.Namespace(lr=0.5), "w": ember.ones(2)})
        return _with_structure(blob, lambda structure: change(structure["root"]))

    def args_node(root):
        return root["items"][0][1]

    cases = [
        # a name the program never allowed (even one weights_only=False would find)
        (lambda r: args_node(r).update({"class": "os:system"}), "os.system.*not an allowed"),
        (lambda r: args_node(r).update({"class": "nowhere"}), "not a 'module:qualname'"),
        (lambda r: r["items"][1].__setitem__(1, {"kind": "ref", "id": 7}), "a reference to 7"),
        (lambda r: r["items"][1].__setitem__(1, {"kind": "global", "name": "builtins:eval"}),
         "builtins.eval.*not an allowed"),
        (lambda r: args_node(r).update(state={"kind": "list", "items": []}), "state must be"),
        (lambda r: args_node(r).update({"code": "x"}), "has fields"),
    ]
    for change, message in cases:
        with serialization.safe_globals([argparse.Namespace]), pytest.raises(
                serialization.CheckpointError, match=message):
            _load(tampered(change))
    # an allowed class with a __new__ of its own is not made
    serialization.add_safe_globals([CustomNew])
    try:
        with pytest.raises(serialization.CheckpointError, match="__new__"):
            _load(_save([CustomNew()]))
    finally:
        serialization.clear_safe_globals()
    # the object kinds in a version 1 file are refused
    blob = _with_structure(_save({"w": ember.ones(2), "n": 1}), lambda structure: structure[
        "root"]["items"][1].__setitem__(1, {"kind": "global", "name": "builtins:len"}))
    with pytest.raises(serialization.CheckpointError, match="global node in a version 1 file"):
        _load(blob, weights_only=False)


def test_a_model_holding_itself_or_sets_round_trips():
    model = TinyLM()
    model.names = {"b", "a", "c"}
    model.me = [model]  # a reference back to the object being saved
    with serialization.safe_globals(CLASSES):
        loaded = _load(_save(model))
    assert loaded.names == {"a", "b", "c"} and loaded.me[0] is loaded
