#!/usr/bin/env python3
"""Write the quantization fixtures in tests/fixtures/quant/ with a real ggml.

The bytes come from ggml itself (the `ggml-py` package's libggml-base,
called through ctypes), never from quanta, so tests/test_quant.c compares
quanta's quantizers with an implementation we did not write.

    pip install -r scripts/requirements-fixtures.txt
    python3 scripts/gen_quant_fixtures.py

Files written (all little-endian):
    input.f32         4096 float32 inputs: 16 super-blocks of 256, each a
                      different pattern (see make_input)
    <type>.bin        those inputs quantized by ggml, one file per type
    q8_K.deq.f32      ggml's dequantization of q8_K.bin (the gguf package
                      has no q8_K, so tests take the reference from here)

Types that ggml_quantize_chunk writes (what llama-quantize runs) come from
it; q8_1 and q8_K, which it does not write, from quantize_row_*_ref. The
script also records where the two ggml entry points disagree (iq4_nl).
CI does not run this script; re-run it only to change the fixtures.
"""
import ctypes
import os
import sys

import numpy as np

# GGUF type ids, names as quanta spells them.
TYPES = {
    "f16": 1, "bf16": 30, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
    "q8_1": 9, "q2_K": 10, "q3_K": 11, "q4_K": 12, "q5_K": 13, "q6_K": 14,
    "q8_K": 15, "iq4_nl": 20, "iq4_xs": 23, "mxfp4": 39,
}
BLOCK = {  # elements, bytes
    "f16": (1, 2), "bf16": (1, 2), "q4_0": (32, 18), "q4_1": (32, 20),
    "q5_0": (32, 22), "q5_1": (32, 24), "q8_0": (32, 34), "q8_1": (32, 36),
    "q2_K": (256, 84), "q3_K": (256, 110), "q4_K": (256, 144), "q5_K": (256, 176),
    "q6_K": (256, 210), "q8_K": (256, 292), "iq4_nl": (32, 18), "iq4_xs": (256, 136),
    "mxfp4": (32, 17),
}
ROW_ONLY = {"q8_1", "q8_K"}  # not written by ggml_quantize_chunk
N = 4096


def load_ggml():
    import ggml  # the ggml-py package

    libdir = os.path.join(os.path.dirname(ggml.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


def make_input(rng):
    """16 super-blocks of 256 floats, each exercising a different path."""
    parts = []
    normal = lambda: rng.standard_normal(256).astype(np.float32)
    parts.append(normal())                                   # plain
    parts.append(np.zeros(256, np.float32))                  # all zero
    x = normal(); x[37] = 50.0; parts.append(x)              # single positive outlier
    x = normal(); x[200] = -50.0; parts.append(x)            # negative maximum
    parts.append(np.full(256, 0.5, np.float32))              # constant
    parts.append((normal() * 1e-20).astype(np.float32))     # below the zero threshold
    parts.append((normal() * 1e4).astype(np.float32))       # large
    parts.append(rng.random(256).astype(np.float32))         # all positive
    parts.append(-rng.random(256).astype(np.float32) - 0.25) # all negative
    x = normal(); x.reshape(16, 16)[::2] = 0; parts.append(x)  # zero sub-blocks
    parts.append((normal() ** 3).astype(np.float32))         # heavy tails
    x = normal(); x[0::32] = -3.0; x[5::32] = 3.0; parts.append(x)  # tied extremes
    for _ in range(4):                                       # per-32 varying spread
        sig = np.repeat(np.exp(rng.uniform(-4, 2, 8)), 32).astype(np.float32)
        parts.append((normal() * sig).astype(np.float32))
    x = np.concatenate(parts)
    assert x.size == N and x.dtype == np.float32
    return x


def quantize(lib, name, x):
    ne, nbytes = BLOCK[name]
    out = np.zeros(N // ne * nbytes, np.uint8)
    xp = x.ctypes.data_as(ctypes.c_void_p)
    op = out.ctypes.data_as(ctypes.c_void_p)
    if name in ROW_ONLY:
        fn = getattr(lib, "quantize_row_%s_ref" % name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn(xp, op, N)
    else:
        # Rows of 256 so every type sees the same rows.
        lib.ggml_quantize_chunk(TYPES[name], xp, op, 0, N // 256, 256, None)
    return out


def quantize_ref(lib, name, x):
    ne, nbytes = BLOCK[name]
    out = np.zeros(N // ne * nbytes, np.uint8)
    fn = getattr(lib, "quantize_row_%s_ref" % name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), N)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = os.path.join(here, "..", "tests", "fixtures", "quant")
    os.makedirs(outdir, exist_ok=True)
    lib = load_ggml()
    x = make_input(np.random.default_rng(20240607))
    x.tofile(os.path.join(outdir, "input.f32"))
    for name in TYPES:
        q = quantize(lib, name, x)
        q.tofile(os.path.join(outdir, name + ".bin"))
        if name not in ROW_ONLY and name not in ("f16", "bf16"):
            same = np.array_equal(q, quantize_ref(lib, name, x))
            if not same:
                print("note: %s: ggml_quantize_chunk differs from quantize_row_%s_ref"
                      % (name, name))
    deq = np.zeros(N, np.float32)
    lib.dequantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    q8k = np.fromfile(os.path.join(outdir, "q8_K.bin"), np.uint8)
    lib.dequantize_row_q8_K(q8k.ctypes.data_as(ctypes.c_void_p),
                            deq.ctypes.data_as(ctypes.c_void_p), N)
    deq.tofile(os.path.join(outdir, "q8_K.deq.f32"))
    print("wrote %d fixtures to %s" % (len(TYPES) + 2, os.path.normpath(outdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
