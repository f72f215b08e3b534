#!/usr/bin/env python3
"""Dequantization is bit-exact with the gguf Python package.

Random blocks of every type the package knows (random quant bits under
random finite scales, plus zero, negative and subnormal scales, and blocks
quanta quantized from edge-case inputs) are dequantized by libquanta
(QUANTA_LIB, through ctypes) and by gguf.quants; the float32 bits must match.
q8_1, which the package lacks, is checked through its q8_0 equivalent (same
quants and scale; the extra sum field must not matter).
"""
import ctypes
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants

from quanta_test_util import check, summary

# name: (GGUF type id, block elements, block bytes, byte offsets of f16 scales)
TYPES = {
    "q4_0": (2, 32, 18, [0]), "q4_1": (3, 32, 20, [0, 2]), "q5_0": (6, 32, 22, [0]),
    "q5_1": (7, 32, 24, [0, 2]), "q8_0": (8, 32, 34, [0]), "q2_K": (10, 256, 84, [80, 82]),
    "q3_K": (11, 256, 110, [108]), "q4_K": (12, 256, 144, [0, 2]), "q5_K": (13, 256, 176, [0, 2]),
    "q6_K": (14, 256, 210, [208]), "iq4_nl": (20, 32, 18, [0]), "iq4_xs": (23, 256, 136, [0]),
    "mxfp4": (39, 32, 17, []), "f16": (1, 1, 2, []), "bf16": (30, 1, 2, []),
}
NBLOCKS = 64


def load_lib():
    lib = ctypes.CDLL(os.environ["QUANTA_LIB"])
    lib.qn_dequantize_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.qn_quantize_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.qn_last_error.restype = ctypes.c_char_p
    return lib


def quanta_dequant(lib, tid, data, n):
    out = np.full(n, np.nan, np.float32)  # poisoned
    s = lib.qn_dequantize_row(tid, data.ctypes.data, out.ctypes.data, n)
    if s != 0:
        raise RuntimeError(lib.qn_last_error().decode())
    return out


def random_scales(rng, n):
    """Finite f16 bit patterns: random, plus zero, negative and subnormal."""
    h = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    h[(h & 0x7C00) == 0x7C00] &= 0xBFFF  # no inf/NaN: clear an exponent bit
    special = np.array([0x0000, 0x8000, 0xBC00, 0x0001, 0x83FF, 0x7BFF, 0xFBFF], np.uint16)
    h[: len(special)] = special[: n]
    return h


def random_blocks(rng, name):
    tid, ne, nb, scale_offsets = TYPES[name]
    blocks = rng.integers(0, 256, (NBLOCKS, nb), dtype=np.uint8)
    for off in scale_offsets:
        blocks[:, off:off + 2] = random_scales(rng, NBLOCKS).view(np.uint8).reshape(NBLOCKS, 2)
    if name in ("f16", "bf16"):
        blocks = random_scales(rng, NBLOCKS).view(np.uint8).reshape(NBLOCKS, 2)
        if name == "bf16":  # any bf16 that is not NaN
            b = rng.integers(0, 1 << 16, NBLOCKS, dtype=np.uint16)
            b[(b & 0x7F80) == 0x7F80] &= 0xFF7F
            blocks = b.view(np.uint8).reshape(NBLOCKS, 2)
    blocks[0] = 0  # an all-zero block
    return blocks.reshape(-1)


def edge_inputs(rng):
    x = rng.standard_normal(8 * 256).astype(np.float32)
    x[:256] = 0                    # zero block
    x[256 + 17] = 40.0             # single outlier
    x[512 + 3] = -40.0             # negative maximum
    x[768:1024] = -rng.random(256) # all negative
    x[1024:1280] *= 1e-6
    x[1280:1536] = 0.25            # constant
    return x


def compare(name, got, want):
    same = np.array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32))
    if not same:
        bad = np.nonzero(got.view(np.uint32) != want.astype(np.float32).view(np.uint32))[0]
        return False, "first mismatch at %d: quanta %r gguf %r" % (bad[0], got[bad[0]], want[bad[0]])
    return True, ""


def main():
    lib = load_lib()
    rng = np.random.default_rng()  # fresh each run
    for name, (tid, ne, nb, _) in TYPES.items():
        for trial in range(4):
            data = random_blocks(rng, name)
            n = data.size // nb * ne
            want = quants.dequantize(data, Q(tid)).reshape(-1)
            ok, detail = compare(name, quanta_dequant(lib, tid, data, n), want)
            check("%s random blocks" % name, ok, detail)
        # blocks quanta wrote from edge-case inputs
        x = edge_inputs(rng)
        q = np.zeros(x.size // ne * nb, np.uint8)
        check("%s quantize" % name, lib.qn_quantize_row(tid, x.ctypes.data, q.ctypes.data, x.size) == 0)
        ok, detail = compare(name, quanta_dequant(lib, tid, q, x.size), quants.dequantize(q, Q(tid)).reshape(-1))
        check("%s edge blocks" % name, ok, detail)

    # q8_1 through q8_0: drop the sum field (bytes 2-3) of each block.
    x = edge_inputs(rng) * 3
    q81 = np.zeros(x.size // 32 * 36, np.uint8)
    lib.qn_quantize_row(9, x.ctypes.data, q81.ctypes.data, x.size)
    blocks = q81.reshape(-1, 36)
    q80 = np.concatenate([blocks[:, :2], blocks[:, 4:]], axis=1).reshape(-1).copy()
    ok, detail = compare("q8_1", quanta_dequant(lib, 9, q81, x.size), quants.dequantize(q80, Q.Q8_0).reshape(-1))
    check("q8_1 via q8_0", ok, detail)
    # and the sum field is d * sum(quants) (from the unrounded d, so only
    # close to the f16 d times the sum; the exact bytes are checked against
    # ggml in test_quant.c)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1)
    s = blocks[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(-1)
    sums = blocks[:, 4:].view(np.int8).astype(np.int32).sum(axis=1).astype(np.float32)
    check("q8_1 sum field", np.allclose(s, sums * d, rtol=2e-3, atol=1e-3), str((s[:4], (sums * d)[:4])))

    # a row that is not a whole number of blocks is refused
    check("bad length", lib.qn_dequantize_row(2, q81.ctypes.data, x.ctypes.data, 33) != 0)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
