#!/usr/bin/env python3
"""GGUF interoperability with the gguf Python package, through the CLI.

- Files the gguf package writes (every metadata type, nested arrays, every
  tensor type, versions 2 and 3, a non-default alignment) read back through
  `quanta inspect --json` with identical metadata and tensor tables, and
  `quanta dump` gives the package's dequantization bit for bit.
- Files `quanta quantize` writes are read by the gguf package: metadata kept,
  1-D tensors untouched, weights in the asked type (or llama.cpp's fallback)
  holding the bytes libquanta's quantizer gives.
- Truncated and corrupted files fail with QN_ERR_FORMAT naming the field,
  never a crash.
Needs QUANTA_BIN (the CLI) and QUANTA_LIB (libquanta.so).
"""
import ctypes
import json
import os
import struct
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

from quanta_test_util import check, quanta, summary

# Metadata of every type, nested arrays included (the package refuses empty
# arrays; test_gguf.c covers those). (value, GGUFValueType)
V = gguf.GGUFValueType
METADATA = {
    "t.u8": (200, V.UINT8), "t.i8": (-100, V.INT8), "t.u16": (60000, V.UINT16),
    "t.i16": (-30000, V.INT16), "t.u32": (4000000000, V.UINT32), "t.i32": (-2000000000, V.INT32),
    "t.f32": (0.1, V.FLOAT32), "t.bool": (True, V.BOOL), "t.bool0": (False, V.BOOL),
    "t.str": ("héllo \"wörld\"\n\ttab", V.STRING), "t.empty": ("", V.STRING),
    "t.u64": (2**63 + 5, V.UINT64), "t.i64": (-2**62, V.INT64), "t.f64": (1e300, V.FLOAT64),
    "t.arr": ([1, -2, 3], V.ARRAY), "t.strs": (["a", "", "ccc"], V.ARRAY),
    "t.farr": ([0.5, -1.25], V.ARRAY), "t.nested": ([[1, 2], [3, 4, 5]], V.ARRAY),
    "t.deep": ([[["x"], ["y", "z"]]], V.ARRAY),
}

# Tensors: name -> (GGML type, NumPy shape). Quantized ones get random blocks.
TENSORS = {
    "f32.2d": (Q.F32, (3, 64)), "f32.1d": (Q.F32, (96,)), "f16.3d": (Q.F16, (2, 3, 32)),
    "bf16.w": (Q.BF16, (4, 32)), "q4_0.w": (Q.Q4_0, (5, 64)), "q4_1.w": (Q.Q4_1, (2, 32)),
    "q5_0.w": (Q.Q5_0, (3, 96)), "q5_1.w": (Q.Q5_1, (2, 64)), "q8_0.w": (Q.Q8_0, (7, 32)),
    "q2_K.w": (Q.Q2_K, (2, 256)), "q3_K.w": (Q.Q3_K, (3, 256)), "q4_K.w": (Q.Q4_K, (2, 512)),
    "q5_K.w": (Q.Q5_K, (2, 256)), "q6_K.w": (Q.Q6_K, (1, 256)), "iq4_nl.w": (Q.IQ4_NL, (3, 64)),
    "iq4_xs.w": (Q.IQ4_XS, (2, 256)), "mxfp4.w": (Q.MXFP4, (2, 64)), "i32.idx": (Q.I32, (5,)),
}


def tensor_data(rng, qtype, shape):
    if qtype == Q.F32:
        return rng.standard_normal(shape).astype(np.float32)
    if qtype == Q.F16:
        return rng.standard_normal(shape).astype(np.float16)
    if qtype == Q.I32:
        return rng.integers(-1000, 1000, shape).astype(np.int32)
    # quantize real values with the package where it can, else random bytes
    # under finite f16 scales
    x = rng.standard_normal(shape).astype(np.float32)
    try:
        return quants.quantize(x, qtype)
    except NotImplementedError:
        ne, nb = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = x.size // ne
        raw = rng.integers(0, 256, (n_blocks, nb), dtype=np.uint8)
        # byte offsets of the f16 scales, which must be finite
        offsets = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
                   Q.IQ4_NL: [0], Q.IQ4_XS: [0]}.get(qtype, [])
        for off in offsets:
            raw[:, off:off + 2] = rng.uniform(-0.1, 0.1, n_blocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
        return raw.reshape(shape[:-1] + (shape[-1] // ne * nb,))


def write_gguf(path, rng, alignment=None):
    w = gguf.GGUFWriter(path, "test")
    if alignment:
        w.add_custom_alignment(alignment)
    for key, (value, vtype) in METADATA.items():
        if vtype == V.ARRAY and key in ("t.arr", "t.nested"):
            w.add_key_value(key, value, vtype, sub_type=V.INT32 if key == "t.arr" else None)
        else:
            w.add_key_value(key, value, vtype)
    data = {}
    for name, (qtype, shape) in TENSORS.items():
        arr = tensor_data(rng, qtype, shape)
        data[name] = arr
        if qtype in (Q.F32, Q.F16, Q.I32):
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return data


def same_value(got, want, vtype):
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            same_value(g, x, vtype) for g, x in zip(got, want))
    if isinstance(want, float) and vtype == V.FLOAT32:
        return np.float32(got) == np.float32(want)
    return got == want


def check_file(tag, path, version=3, alignment=32):
    r = quanta("inspect", path, "--json")
    check(tag + " inspect exit", r.returncode == 0, r.stderr)
    if r.returncode != 0:
        return
    info = json.loads(r.stdout)
    meta = info["metadata"]
    for key, (value, vtype) in METADATA.items():
        check("%s meta %s" % (tag, key), key in meta and same_value(meta[key], value, vtype),
              "quanta %r, written %r" % (meta.get(key), value))
    check(tag + " arch", meta.get("general.architecture") == "test")
    if alignment != 32:
        check(tag + " alignment", meta.get("general.alignment") == alignment)
    text = quanta("inspect", path).stdout
    check(tag + " version", ("GGUF version %d" % version) in text, text[:120])

    reader = gguf.GGUFReader(path)
    by_name = {t["name"]: t for t in info["tensors"]}
    check(tag + " tensor count", len(info["tensors"]) == len(reader.tensors))
    data_start = min(t.data_offset for t in reader.tensors) - min(t["offset"] for t in info["tensors"])
    check(tag + " data aligned", data_start % alignment == 0)
    with tempfile.TemporaryDirectory() as tmp:
        for t in reader.tensors:
            mine = by_name.get(t.name)
            check("%s %s listed" % (tag, t.name), mine is not None)
            if mine is None:
                continue
            check("%s %s type" % (tag, t.name), mine["type"] == t.tensor_type.name.lower()
                  or mine["type"].lower() == t.tensor_type.name.lower(), mine["type"])
            check("%s %s shape" % (tag, t.name), mine["shape"] == [int(x) for x in t.shape])
            check("%s %s offset" % (tag, t.name), mine["offset"] + data_start == t.data_offset)
            if t.tensor_type == Q.I32:
                continue
            out = os.path.join(tmp, "t.npy")
            d = quanta("dump", path, t.name, "-o", out)
            check("%s %s dump" % (tag, t.name), d.returncode == 0, d.stderr)
            if d.returncode != 0:
                continue
            got = np.load(out)
            want = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            want = want.reshape(tuple(int(x) for x in reversed(t.shape)))
            check("%s %s dump values" % (tag, t.name),
                  got.dtype == np.float32 and got.shape == want.shape
                  and np.array_equal(got.view(np.uint32), want.view(np.uint32)),
                  "shape %s vs %s" % (got.shape, want.shape))


def fallback(target, ne0):
    """llama.cpp's choice when rows of ne0 do not fit the target's block."""
    if ne0 % gguf.GGML_QUANT_SIZES[target][0] == 0:
        return target
    alt = {Q.Q2_K: Q.IQ4_NL, Q.Q3_K: Q.IQ4_NL, Q.IQ4_XS: Q.IQ4_NL, Q.Q4_K: Q.Q5_0,
           Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}.get(target, Q.F16)
    return alt if ne0 % gguf.GGML_QUANT_SIZES[alt][0] == 0 else Q.F16


def check_quantize(src, tmp):
    lib = ctypes.CDLL(os.environ["QUANTA_LIB"])
    lib.qn_quantize_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    src_reader = gguf.GGUFReader(src)
    src_tensors = {t.name: t for t in src_reader.tensors}
    # rows of 32, 64 and 96 make the K-quants fall back as llama.cpp does
    for target in ("q8_0", "q4_K", "q6_K", "iq4_xs", "mxfp4", "q4_0", "q2_K"):
        out = os.path.join(tmp, "out_%s.gguf" % target)
        r = quanta("quantize", src, out, target)
        check("quantize %s exit" % target, r.returncode == 0, r.stderr)
        if r.returncode != 0:
            continue
        if target in ("q4_K", "q6_K", "iq4_xs", "q2_K"):
            check("quantize %s says fallback" % target, "q5_0.w" in r.stderr and "using" in r.stderr, r.stderr)
        rd = gguf.GGUFReader(out)
        for key, (value, vtype) in METADATA.items():
            f = rd.fields.get(key)
            ok = f is not None and f.types == src_reader.fields[key].types
            if ok and key not in ("t.nested", "t.deep"):  # the package flattens nested arrays
                ok = same_value(f.contents(), value, vtype)
            check("quantize %s keeps %s" % (target, key), ok)
        check("quantize %s quantization_version" % target,
              rd.fields["general.quantization_version"].contents() == 2)
        for t in rd.tensors:
            s = src_tensors[t.name]
            if len(s.shape) < 2 or s.tensor_type == Q.I32:
                check("quantize %s keeps %s" % (target, t.name),
                      t.tensor_type == s.tensor_type and bytes(t.data.tobytes()) == bytes(s.data.tobytes()))
                continue
            want_type = fallback(Q[target.upper()], int(s.shape[0]))
            check("quantize %s %s type" % (target, t.name), t.tensor_type == want_type, t.tensor_type.name)
            if want_type == s.tensor_type:  # already in the type: copied, as llama.cpp does
                check("quantize %s %s copied" % (target, t.name), t.data.tobytes() == s.data.tobytes())
                continue
            # the bytes are libquanta's quantization of the source values
            x = np.ascontiguousarray(quants.dequantize(s.data, s.tensor_type).astype(np.float32).reshape(-1))
            ne, nb = gguf.GGML_QUANT_SIZES[want_type]
            q = np.zeros(x.size // ne * nb, np.uint8)
            lib.qn_quantize_row(int(want_type), x.ctypes.data, q.ctypes.data, x.size)
            check("quantize %s %s bytes" % (target, t.name), q.tobytes() == t.data.tobytes())
            back = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            # a sanity bound on top of the exact bytes above: the largest error
            # relative to the largest value; 2-bit q2_K's step alone is a third
            # of a sub-block's range, plus its 4-bit scale and minimum
            err = np.max(np.abs(back - x)) / max(np.max(np.abs(x)), 1e-30)
            bound = 0.5 if target == "q2_K" else 0.35
            check("quantize %s %s close" % (target, t.name), err < bound, "%g (bound %g)" % (err, bound))


def check_random_same_shape(src, tmp):
    """quantize keep --random: same metadata, names, types and shapes; new weights (random values of
    standard deviation 0.02 quantized to each weight's type), 1-D tensors copied; the seed repeats."""
    outs = []
    for i, seed in enumerate(("7", "7", "8")):
        out = os.path.join(tmp, "same_%d.gguf" % i)
        r = quanta("quantize", src, out, "keep", "--random", seed)
        check("quantize keep --random %s exit" % seed, r.returncode == 0, r.stderr)
        if r.returncode != 0:
            return
        outs.append(gguf.GGUFReader(out))
    src_reader = gguf.GGUFReader(src)
    for t, a, b, c in zip(src_reader.tensors, *[o.tensors for o in outs]):
        same = a.name == t.name and a.tensor_type == t.tensor_type and list(a.shape) == list(t.shape)
        check("random %s same name, type and shape" % t.name, same)
        if len(t.shape) < 2 or t.tensor_type == Q.I32:
            check("random %s copied" % t.name, a.data.tobytes() == t.data.tobytes())
            continue
        check("random %s new values" % t.name, a.data.tobytes() != t.data.tobytes())
        check("random %s seed repeats" % t.name, a.data.tobytes() == b.data.tobytes())
        check("random %s seed differs" % t.name, a.data.tobytes() != c.data.tobytes())
        x = quants.dequantize(a.data, a.tensor_type).astype(np.float64).reshape(-1)
        check("random %s spread" % t.name, 0.01 < np.std(x) < 0.03, "std %g" % np.std(x))
    for key in src_reader.fields:
        check("random keeps %s" % key, key in outs[0].fields)
    bad = quanta("quantize", src, os.path.join(tmp, "x.gguf"), "keep", "--random", "seven")
    check("random bad seed", bad.returncode != 0 and "--random seven" in bad.stderr, bad.stderr)


def corrupt_cases(path, tmp):
    blob = open(path, "rb").read()

    def expect_format(tag, data, needle):
        p = os.path.join(tmp, "bad.gguf")
        open(p, "wb").write(data)
        r = quanta("inspect", p)
        ok = r.returncode == 1 and "QN_ERR_FORMAT" in r.stderr and needle in r.stderr
        check("corrupt " + tag, ok, "rc %d: %s" % (r.returncode, r.stderr.strip()[:200]))

    # every truncation of the header and metadata region fails cleanly
    header_end = gguf.GGUFReader(path).tensors[0].data_offset
    bad = 0
    for cut in list(range(0, header_end, 7)) + [header_end - 1]:
        p = os.path.join(tmp, "cut.gguf")
        open(p, "wb").write(blob[:cut])
        r = quanta("inspect", p)
        if r.returncode != 1 or ("QN_ERR_FORMAT" not in r.stderr):
            bad += 1
            print("  cut at %d: rc %d %s" % (cut, r.returncode, r.stderr.strip()[:160]))
    check("truncations fail with QN_ERR_FORMAT", bad == 0)
    expect_format("data cut", blob[:-40], "past the end of the file")
    expect_format("magic", b"GGUX" + blob[4:], "bad magic")
    expect_format("version 1", blob[:4] + struct.pack("<I", 1) + blob[8:], "version 1")
    expect_format("kv count", blob[:16] + struct.pack("<Q", 2**62) + blob[24:], "metadata count")
    expect_format("tensor count", blob[:8] + struct.pack("<Q", 2**40) + blob[16:], "tensor count")
    # the first key's length
    expect_format("key length", blob[:24] + struct.pack("<Q", 2**50) + blob[32:], "string length")
    # the first value's type: after the key (length + bytes)
    klen = struct.unpack("<Q", blob[24:32])[0]
    at = 32 + klen
    expect_format("value type", blob[:at] + struct.pack("<I", 99) + blob[at + 4:], "unknown value type 99")
    # the first tensor's type field, found through its name
    name = b"f32.2d"
    i = blob.index(name) + len(name)
    n_dims = struct.unpack("<I", blob[i:i + 4])[0]
    tpos = i + 4 + 8 * n_dims
    r_type = blob[:tpos] + struct.pack("<I", 16) + blob[tpos + 4:]
    p = os.path.join(tmp, "iq2.gguf")
    open(p, "wb").write(r_type)
    r = quanta("inspect", p)
    check("unsupported tensor type", r.returncode == 1 and "QN_ERR_UNSUPPORTED" in r.stderr and "f32.2d" in r.stderr,
          r.stderr)
    expect_format("misaligned offset", blob[:tpos + 4] + struct.pack("<Q", 3) + blob[tpos + 12:], "alignment")
    expect_format("huge ne", blob[:i + 4] + struct.pack("<Q", 2**63 - 1) + blob[i + 12:], "f32.2d")
    j = blob.index(b"q4_0.w") + len(b"q4_0.w")
    expect_format("ne0 not a block", blob[:j + 4] + struct.pack("<Q", 65) + blob[j + 12:], "q4_0.w")
    expect_format("n_dims", blob[:i] + struct.pack("<I", 5) + blob[i + 4:], "n_dims 5")
    # a duplicate key: "t.i8" renamed to "t.u8" (same length)
    expect_format("duplicate key", blob.replace(b"t.i8", b"t.u8", 1), "duplicate key 't.u8'")


def check_lazy_open(tmp):
    """A 6 GiB file (sparse) opens and lists without reading its tensor."""
    import resource
    import time
    path = os.path.join(tmp, "big.gguf")
    w = gguf.GGUFWriter(path, "big")
    shape, nbytes = (3 * 2**20, 1024), 3 * 2**20 * 1024 * 2
    w.add_tensor_info("big.weight", shape, np.dtype(np.float16), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    size = os.path.getsize(path)
    pad = (32 - size % 32) % 32
    with open(path, "r+b") as f:
        f.truncate(size + pad + nbytes)
    start = time.monotonic()
    r = quanta("inspect", path, "--json")
    elapsed = time.monotonic() - start
    check("big file inspect", r.returncode == 0 and json.loads(r.stdout)["tensors"][0]["shape"] == [1024, 3 * 2**20],
          r.stderr)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    check("big file not read", elapsed < 5 and rss_mb < 512, "%.1fs, %.0f MB" % (elapsed, rss_mb))


def main():
    rng = np.random.default_rng()
    with tempfile.TemporaryDirectory() as tmp:
        v3 = os.path.join(tmp, "v3.gguf")
        write_gguf(v3, rng)
        check_file("v3", v3)
        # version 2 has the same layout
        v2 = os.path.join(tmp, "v2.gguf")
        blob = bytearray(open(v3, "rb").read())
        blob[4:8] = struct.pack("<I", 2)
        open(v2, "wb").write(blob)
        check_file("v2", v2, version=2)
        a64 = os.path.join(tmp, "a64.gguf")
        write_gguf(a64, rng, alignment=64)
        check_file("align64", a64, alignment=64)
        check_quantize(v3, tmp)
        check_random_same_shape(v3, tmp)
        check_lazy_open(tmp)
        corrupt_cases(v3, tmp)
        r = quanta("inspect", os.path.join(tmp, "missing.gguf"))
        check("missing file", r.returncode == 1 and "QN_ERR_IO" in r.stderr, r.stderr)
        r = quanta("dump", v3, "no.such.tensor", "-o", os.path.join(tmp, "x.npy"))
        check("dump unknown tensor", r.returncode == 1 and "no.such.tensor" in r.stderr, r.stderr)
        r = quanta("quantize", v3, os.path.join(tmp, "x.gguf"), "q9_9")
        check("quantize unknown type", r.returncode == 1 and "q9_9" in r.stderr, r.stderr)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
