#!/usr/bin/env python3
"""Write the Gemma 3 reference data in tests/fixtures/gemma3/ with llama.cpp.

The token ids, logits and greedy continuations come from llama.cpp itself
(the `llama-cpp-python` package, which builds llama.cpp from source), run on
the CPU on the same GGUF file quanta's tests load, so tests/test_gemma3.c
compares quanta's tokenizer and forward pass with an implementation we did
not write.

llama.cpp's CPU backend quantizes activations to 8 bits before each matrix
product, which moves its logits by up to ~0.4 on this model: too coarse to
tell a small error in quanta from its own, and enough to flip greedy choices
whose top two logits are that close. So the logits and the continuations are
also computed by Reference below: the Gemma 3 forward pass in float64 NumPy
from the weights as the `gguf` package dequantizes them, written from the
model's definition (not from quanta's code), which the tests hold quanta to
within 0.01.

    pip install -r scripts/requirements-model-fixtures.txt   # builds llama.cpp: 10-20 min
    python3 scripts/gen_gemma_fixtures.py [MODEL.gguf]

Without an argument the model comes from scripts/fetch-model.sh. Files:
    tokenize.json   token ids of strings (plain, unicode, whitespace runs,
                    special tokens), with and without BOS and special-token
                    parsing; and the text of a set of ids (token_to_piece)
    logits.json     for each prompt: its ids and the 10 largest next-token
                    logits after evaluating it (ids and values), from
                    llama.cpp and from the float64 reference
    greedy.json     for each prompt: 64 tokens of greedy continuation
                    (argmax of the logits, ties to the lower id) with each
                    step's margin between the best two logits and the
                    runner-up, from llama.cpp and from the reference

CI does not run this script; re-run it only to change the fixtures.
"""
import json
import os
import subprocess
import sys

import numpy as np
import llama_cpp
from gguf import GGUFReader
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "gemma3")

# Strings whose tokenization is checked: (text, add_bos, parse_special).
STRINGS = [
    ("Hello world", True, False),
    ("Hello world", False, False),
    ("", True, False),
    ("", False, False),
    ("The quick brown fox jumps over the lazy dog.", True, False),
    (" leading space", True, False),
    ("trailing space ", True, False),
    ("  two  spaces   three    four", True, False),
    ("a" + " " * 40 + "b", True, False),
    ("tabs\tand\t\ttabs\t\t\t", True, False),
    ("line one\nline two\n\n\nthree\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\nend", True, False),
    ("\n", True, False),
    ("Grüße aus München — ça va? naïve café", True, False),
    ("日本語のテキストと中文文本, 한국어 텍스트", True, False),
    ("Здравствуй, мир! Ελληνικά γράμματα", True, False),
    ("emoji 🤖🚀👩‍💻 and flags 🇫🇷", True, False),
    ("rare 𠜎𠜱𠝹 \u2581 \u00a0nbsp \x7f\x01 ctrl", True, False),
    ("def f(x):\n    return x ** 2  # square\n", True, False),
    ("3.14159 1,000,000 2024-01-01 0x1F 1e-6", True, False),
    ("<table><tr><td>cell</td></tr></table> <b>bold</b>", True, False),
    ("<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", True, True),
    ("<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", True, False),
    ("<bos>text<eos> and <unk> <pad> <mask>", False, True),
    ("<bos>text<eos> and <unk> <pad> <mask>", False, False),
    ("[multimodal] <unused0><unused99>x", False, True),
    ("supercalifragilisticexpialidocious antidisestablishmentarianism", True, False),
    ("It's a dog's life; isn't it? \"Quoted\" 'single' (parens) [brackets] {braces}", True, False),
]

# Token ids whose text is checked (token_to_piece, special on and off).
PIECES = [0, 1, 2, 3, 4, 5, 6, 105, 106, 107, 108, 138, 168, 236, 237, 238, 255, 256, 300, 1000, 10000,
          100000, 200000, 262143, 236743, 236764, 236881]

LONG = ("The history of the printing press begins in the fifteenth century. " * 60).strip()

# Prompts for the logits (raw text, BOS added, special tokens parsed).
LOGIT_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "<start_of_turn>user\nWhat is 17 times 3?<end_of_turn>\n<start_of_turn>model\n",
    "Grüße! 日本語で話しましょう。",
    "def fibonacci(n):\n    ",
    LONG,  # longer than the sliding window (512): the ring and the mask
]

GREEDY_PROMPTS = [
    "The capital of France is",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
    "Here is a list of colors: red, green,",
]
GREEDY_TOKENS = 64
TOP = 10


class Reference:
    """Gemma 3 in float64: the whole sequence recomputed for every call."""

    def __init__(self, path):
        r = GGUFReader(path)
        f = r.fields
        arch = "gemma3."

        def num(key, default=None):
            return float(f[arch + key].parts[-1][0]) if arch + key in f else default

        self.E = int(num("embedding_length"))
        self.L = int(num("block_count"))
        self.H = int(num("attention.head_count"))
        self.Hkv = int(num("attention.head_count_kv"))
        self.D = int(num("attention.key_length"))
        self.eps = num("attention.layer_norm_rms_epsilon")
        self.base = num("rope.freq_base")
        self.base_local = num("rope.freq_base_swa", 10000.0)
        self.window = int(num("attention.sliding_window"))
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.w[t.name] = a.reshape([int(x) for x in reversed(t.shape)])

    def rms(self, x, w):
        # The file stores Gemma's (1 + weight) already.
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos, base):  # x [n, heads, D], NeoX pairs (i, i + D/2)
        half = self.D // 2
        ang = np.outer(pos, base ** (-np.arange(half) * 2.0 / self.D))
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    def logits(self, ids):
        w, n, D, H, Hkv = self.w, len(ids), self.D, self.H, self.Hkv
        pos = np.arange(n)
        x = w["token_embd.weight"][ids] * np.sqrt(self.E)
        for l in range(self.L):
            p = "blk.%d." % l
            local = l % 6 < 5
            h = self.rms(x, w[p + "attn_norm.weight"])
            q = (h @ w[p + "attn_q.weight"].T).reshape(n, H, D)
            k = (h @ w[p + "attn_k.weight"].T).reshape(n, Hkv, D)
            v = (h @ w[p + "attn_v.weight"].T).reshape(n, Hkv, D)
            base = self.base_local if local else self.base
            q = self.rope(self.rms(q, w[p + "attn_q_norm.weight"]), pos, base)
            k = self.rope(self.rms(k, w[p + "attn_k_norm.weight"]), pos, base)
            hidden = pos[None, :] > pos[:, None]
            if local:
                hidden |= pos[:, None] - pos[None, :] >= self.window
            out = np.zeros((n, H, D))
            for hh in range(H):
                kv = hh // (H // Hkv)
                sc = q[:, hh] @ k[:, kv].T / np.sqrt(D)
                sc[hidden] = -np.inf
                sc = np.exp(sc - sc.max(axis=1, keepdims=True))
                out[:, hh] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, kv]
            o = out.reshape(n, H * D) @ w[p + "attn_output.weight"].T
            x = x + self.rms(o, w[p + "post_attention_norm.weight"])
            h = self.rms(x, w[p + "ffn_norm.weight"])
            g = h @ w[p + "ffn_gate.weight"].T
            g = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
            f = (g * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
            x = x + self.rms(f, w[p + "post_ffw_norm.weight"])
        return w["token_embd.weight"] @ self.rms(x[-1], w["output_norm.weight"])


def model_path():
    if len(sys.argv) > 1:
        return sys.argv[1]
    script = os.path.join(HERE, "fetch-model.sh")
    return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()


def last_logits(llm):
    """The logits of the last token evaluated (the only one that has them)."""
    p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(p, shape=(llm.n_vocab(),)).astype(np.float32)


def logits_after(llm, ids):
    """Evaluate ids from an empty cache; the last token's logits."""
    llm.reset()  # the next eval drops the cache from position 0 on
    llm.eval(ids)
    return last_logits(llm)


def main():
    path = model_path()
    llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_batch=2048, n_ubatch=2048, n_threads=os.cpu_count(),
                          n_gpu_layers=0, logits_all=False, verbose=False, seed=0)
    os.makedirs(OUT, exist_ok=True)
    meta = {"model": os.path.basename(path), "llama_cpp_python": llama_cpp.__version__}

    tok = []
    for text, add_bos, special in STRINGS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
        tok.append({"text": text, "add_bos": add_bos, "parse_special": special, "ids": list(map(int, ids))})
    pieces = []
    for i in PIECES:
        p = [llm.detokenize([i], special=s) for s in (False, True)]
        pieces.append({"id": i, "text": p[0].hex(), "text_special": p[1].hex()})
    with open(os.path.join(OUT, "tokenize.json"), "w") as f:
        json.dump({**meta, "strings": tok, "pieces_hex": pieces}, f, ensure_ascii=False, indent=1)

    ref = Reference(path)
    prompts = []
    for text in LOGIT_PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        entry = {"text": text, "ids": list(map(int, ids))}
        for key, logits in (("", logits_after(llm, ids)), ("ref_", ref.logits(ids))):
            top = np.argsort(-logits, kind="stable")[:TOP]
            entry[key + "top_ids"] = list(map(int, top))
            entry[key + "top_logits"] = [round(float(logits[i]), 5) for i in top]
        prompts.append(entry)
        print("logits: %d tokens, top %s / %s" % (len(ids), entry["top_ids"][:3], entry["ref_top_ids"][:3]),
              file=sys.stderr)
    with open(os.path.join(OUT, "logits.json"), "w") as f:
        json.dump({**meta, "top": TOP, "prompts": prompts}, f, ensure_ascii=False, indent=1)

    greedy = []
    for text in GREEDY_PROMPTS:
        ids = list(map(int, llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)))
        entry = {"text": text, "ids": ids}
        llm.reset()
        llm.eval(ids)
        for key, next_logits in (("", lambda seq: last_logits(llm)), ("ref_", lambda seq: ref.logits(seq))):
            out, second, margins = [], [], []
            for _ in range(GREEDY_TOKENS):
                logits = next_logits(ids + out)
                two = np.argsort(-logits, kind="stable")[:2]
                out.append(int(two[0]))
                second.append(int(two[1]))
                margins.append(round(float(logits[two[0]] - logits[two[1]]), 5))
                if key == "":
                    llm.eval([int(two[0])])
            entry[key + "continuation"], entry[key + "second"], entry[key + "margins"] = out, second, margins
            print("greedy %s: %r" % (key or "llama.cpp", llm.detokenize(out).decode("utf-8", "replace")),
                  file=sys.stderr)
        entry["text_16"] = llm.detokenize(entry["ref_continuation"][:16]).decode("utf-8")
        greedy.append(entry)
    with open(os.path.join(OUT, "greedy.json"), "w") as f:
        json.dump({**meta, "tokens": GREEDY_TOKENS, "prompts": greedy}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
