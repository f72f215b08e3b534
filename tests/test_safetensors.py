#!/usr/bin/env python3
"""safetensors through the CLI against the safetensors package's writer:
`quanta inspect --json` lists the metadata and every tensor's dtype, shape
and byte range as written; `quanta dump` of float tensors gives the values
bit for bit; malformed headers fail with QN_ERR_FORMAT. Needs QUANTA_BIN."""
import json
import os
import struct
import sys
import tempfile

import numpy as np
from safetensors.numpy import save_file

from quanta_test_util import check, quanta, summary


def main():
    rng = np.random.default_rng()
    tensors = {
        "model.w": rng.standard_normal((3, 5)).astype(np.float32),
        "model.h": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "model.scalar": np.array(1.5, np.float32),
        "packed": rng.integers(0, 2**32, (4, 2), dtype=np.uint32),
        "ids": rng.integers(-9, 9, (7,), dtype=np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        save_file(tensors, path, metadata={"format": "np", "note": "é \"q\""})
        r = quanta("inspect", path, "--json")
        check("inspect exit", r.returncode == 0, r.stderr)
        info = json.loads(r.stdout) if r.returncode == 0 else {"metadata": {}, "tensors": []}
        check("metadata", info["metadata"] == {"format": "np", "note": "é \"q\""}, str(info["metadata"]))
        hlen = struct.unpack("<Q", open(path, "rb").read(8))[0]
        header = json.loads(open(path, "rb").read()[8:8 + hlen])
        listed = {t["name"]: t for t in info["tensors"]}
        check("tensor count", len(listed) == len(tensors))
        for name, arr in tensors.items():
            t = listed.get(name)
            check(name + " listed", t is not None)
            if t is None:
                continue
            h = header[name]
            check(name + " dtype", t["type"] == h["dtype"], t["type"])
            check(name + " shape", t["shape"] == list(arr.shape), str(t["shape"]))
            check(name + " range", [t["offset"], t["offset"] + t["bytes"]] == h["data_offsets"])
            out = os.path.join(tmp, "t.npy")
            d = quanta("dump", path, name, "-o", out)
            if arr.dtype.kind == "f":
                check(name + " dump", d.returncode == 0, d.stderr)
                if d.returncode == 0:
                    got, want = np.load(out), arr.astype(np.float32)
                    check(name + " values", got.shape == want.shape and
                          np.array_equal(got.view(np.uint32), want.view(np.uint32)))
            else:
                check(name + " dump refused", d.returncode == 1 and "not a float type" in d.stderr, d.stderr)

        blob = open(path, "rb").read()
        cases = {
            "header past the end": struct.pack("<Q", len(blob)) + blob[8:],
            "truncated data": blob[:-3],
            "broken json": blob[:8] + b"[" + blob[9:],
            "short": blob[:5],
        }
        for tag, data in cases.items():
            p = os.path.join(tmp, "bad.safetensors")
            open(p, "wb").write(data)
            r = quanta("inspect", p)
            check("corrupt " + tag, r.returncode == 1 and "QN_ERR_FORMAT" in r.stderr, r.stderr.strip())
    return summary()


if __name__ == "__main__":
    sys.exit(main())
