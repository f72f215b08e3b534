#!/usr/bin/env python3
"""Write the MLX fixtures in tests/fixtures/mlx/ with MLX itself.

    pip install -r scripts/requirements-fixtures.txt
    python3 scripts/gen_mlx_fixtures.py

model.safetensors  an MLX-quantized checkpoint as mx.save_safetensors writes
                   it: for each module M, M.weight (packed uint32), M.scales,
                   M.biases; plus "embed.weight", left unquantized
config.json        its "quantization" entry: a default and per-module
                   overrides (bits 2, 3, 4, 6, 8; groups 32, 64, 128;
                   f16, bf16 and f32 scales)
expected.safetensors
                   M.source: the float32 weights that were quantized
                   (values of the scale dtype), M.dequant: mx.dequantize of
                   the checkpoint computed in float32
tests/test_mlx.c checks quanta's quantize and dequantize against these.
CI does not run this script.
"""
import json
import os
import sys

import mlx.core as mx
import numpy as np

# module: (rows, cols, bits, group size, dtype)
MODULES = {
    "layers.0.q": (8, 128, 4, 64, mx.float16),
    "layers.0.k": (4, 64, 3, 32, mx.bfloat16),
    "layers.1.v": (2, 256, 6, 128, mx.float16),
    "layers.1.o": (3, 64, 2, 32, mx.float32),
    "layers.2.up": (2, 64, 8, 32, mx.bfloat16),
}
DEFAULT = (4, 64)  # bits, group size: what layers.0.q uses


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "fixtures", "mlx")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    model, expected = {}, {}
    quant = {"bits": DEFAULT[0], "group_size": DEFAULT[1]}
    for name, (rows, cols, bits, gs, dtype) in MODULES.items():
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        x *= np.exp(rng.uniform(-3, 2, (rows, 1))).astype(np.float32)
        x[0, :gs] = 0.0                     # a zero group
        x[-1, 5] = -40.0                    # a negative outlier
        w = mx.array(x).astype(dtype)
        q, s, b = mx.quantize(w, group_size=gs, bits=bits)
        model[name + ".weight"], model[name + ".scales"], model[name + ".biases"] = q, s, b
        expected[name + ".source"] = w.astype(mx.float32)
        expected[name + ".dequant"] = mx.dequantize(q, s.astype(mx.float32), b.astype(mx.float32),
                                                    group_size=gs, bits=bits)
        if (bits, gs) != DEFAULT:
            quant[name] = {"bits": bits, "group_size": gs}
    model["embed.weight"] = mx.array(rng.standard_normal((4, 8)).astype(np.float16))
    quant["embed"] = False
    mx.save_safetensors(os.path.join(out, "model.safetensors"), model, metadata={"format": "mlx"})
    mx.save_safetensors(os.path.join(out, "expected.safetensors"), expected)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model_type": "test", "quantization": quant}, f, indent=2)
        f.write("\n")
    print("wrote", os.path.normpath(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
