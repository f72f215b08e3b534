#!/usr/bin/env python3
"""Write the fuzzers' seed corpus (fuzz/corpus/) with the gguf and
safetensors packages: small valid files touching every metadata type and a
range of tensor types, so fuzzing starts from deep inside the parsers.

    python3 scripts/gen_fuzz_corpus.py
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import save_file

V = gguf.GGUFValueType


def write_gguf(path, with_tensors, alignment=None):
    rng = np.random.default_rng(len(path))
    w = gguf.GGUFWriter(path, "seed")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("u8", 1); w.add_int8("i8", -1); w.add_uint16("u16", 2); w.add_int16("i16", -2)
    w.add_uint32("u32", 3); w.add_int32("i32", -3); w.add_float32("f32", 0.5); w.add_bool("b", True)
    w.add_string("s", "text"); w.add_uint64("u64", 4); w.add_int64("i64", -4); w.add_float64("f64", 0.25)
    w.add_array("ints", [1, 2, 3]); w.add_array("strs", ["a", "bc"])
    w.add_key_value("nested", [[1], [2, 3]], V.ARRAY)
    if with_tensors:
        w.add_tensor("a", rng.standard_normal((2, 32)).astype(np.float32))
        w.add_tensor("b", rng.standard_normal(32).astype(np.float16))
        for qt in (Q.Q4_0, Q.Q8_0, Q.Q5_1):
            w.add_tensor(qt.name.lower(), gguf.quants.quantize(rng.standard_normal((1, 32)).astype(np.float32), qt),
                         raw_dtype=qt)
        raw = rng.integers(0, 256, (1, 210), dtype=np.uint8)
        raw[:, 208:210] = 0
        w.add_tensor("q6_k", raw, raw_dtype=Q.Q6_K)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")
    g, s = os.path.join(root, "gguf"), os.path.join(root, "safetensors")
    os.makedirs(g, exist_ok=True); os.makedirs(s, exist_ok=True)
    write_gguf(os.path.join(g, "full.gguf"), True)
    write_gguf(os.path.join(g, "meta_only.gguf"), False)
    write_gguf(os.path.join(g, "align64.gguf"), True, alignment=64)
    with open(os.path.join(g, "empty_v2.gguf"), "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 2, 0, 0))
    rng = np.random.default_rng(1)
    save_file({"w": rng.standard_normal((2, 3)).astype(np.float32), "h": np.zeros(4, np.float16),
               "q": rng.integers(0, 2**32, (2, 2), dtype=np.uint32)},
              os.path.join(s, "plain.safetensors"), metadata={"format": "pt"})
    header = json.dumps({"x": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [0, 4]},
                         "__metadata__": {"k": "v\\u00e9"}}).encode()
    with open(os.path.join(s, "bf16.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\x00\x3f\x80\x3f")
    # an MLX checkpoint: the test fixture
    mlx = os.path.join(root, "..", "..", "tests", "fixtures", "mlx", "model.safetensors")
    with open(mlx, "rb") as src, open(os.path.join(s, "mlx.safetensors"), "wb") as dst:
        dst.write(src.read())
    print("wrote", os.path.normpath(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
