#!/usr/bin/env python3
"""Where a decode step's time goes on the GPU, as the replayed graph runs it.

`quanta bench --case model-decode --profile` brackets every op with timing
events, which cost an op 2-3 us and stop an op from starting while the one
before it finishes. This script records the kernels of plain replays
instead, through CUPTI (PyTorch's profiler), and prints for each op of the
step its mean duration and what it adds to the step: the time from the
previous kernel's end to its own end. Ops start early (programmatic
dependent launch), so durations overlap; the additions sum to the step.

  python3 scripts/trace_decode.py MODEL.gguf [--lib build/libquanta.so] [--tokens 32]

Needs a GPU machine with PyTorch (for its profiler); quanta itself is
loaded through ctypes and runs as in any program.
"""
import argparse
import collections
import ctypes
import json
import os
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile


QN_BACKEND_CUDA = 2  # qn_backend in quanta.h


class SampleParams(ctypes.Structure):  # qn_sample_params
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float), ("seed", ctypes.c_uint64)]


def check(lib, status, what):
    if status != 0:
        lib.qn_last_error.restype = ctypes.c_char_p
        sys.exit(f"trace_decode: {what}: {lib.qn_last_error().decode()} (status {status})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--lib", default="build/libquanta.so")
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()

    torch.cuda.init()  # the profiler's CUPTI session wants a CUDA context up
    lib = ctypes.CDLL(os.path.abspath(args.lib))
    P = ctypes.c_void_p
    dev, model, ctx = P(), P(), P()
    check(lib, lib.qn_device_open(QN_BACKEND_CUDA, 0, ctypes.byref(dev)), "qn_device_open(cuda)")
    check(lib, lib.qn_model_load(dev, args.model.encode(), None, None, ctypes.byref(model)), args.model)
    check(lib, lib.qn_context_create(model, 4096, ctypes.byref(ctx)), "qn_context_create")
    greedy = SampleParams(0.0, 0, 1.0, 0.0, 1.0, 1)
    tok = (ctypes.c_int32 * 1)(2)
    check(lib, lib.qn_context_eval(ctx, tok, ctypes.c_size_t(1)), "qn_context_eval")
    check(lib, lib.qn_context_sample(ctx, ctypes.byref(greedy), tok), "qn_context_sample")
    for _ in range(8):  # kernels compiled, the graph captured
        check(lib, lib.qn_context_decode(ctx, ctypes.byref(greedy), tok), "qn_context_decode")

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.tokens):
            check(lib, lib.qn_context_decode(ctx, ctypes.byref(greedy), tok), "qn_context_decode")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        events = json.load(open(path))["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    if len(kernels) < args.tokens:
        sys.exit(f"trace_decode: the profiler recorded {len(kernels)} kernels for {args.tokens} tokens")

    # The step is the kernel sequence that repeats every token; drop the
    # first and last token's kernels (profiler start and stop).
    per = len(kernels) // args.tokens
    steps = [kernels[i * per:(i + 1) * per] for i in range(1, args.tokens - 1)]
    names = [k["name"] for k in steps[0]]
    if any([k["name"] for k in s] != names for s in steps):
        sys.exit("trace_decode: the steps do not repeat one kernel sequence")
    dur = collections.defaultdict(float)
    add = collections.defaultdict(float)
    wall = 0.0
    for s in steps:
        wall += s[-1]["ts"] + s[-1]["dur"] - (s[0]["ts"])
        prev_end = None
        for i, k in enumerate(s):
            end = k["ts"] + k["dur"]
            dur[i] += k["dur"]
            add[i] += k["dur"] if prev_end is None else end - prev_end
            prev_end = end
    n = len(steps)
    by_name = collections.OrderedDict()
    for i, name in enumerate(names):
        short = name.split("(")[0]
        c = by_name.setdefault(short, [0, 0.0, 0.0])
        c[0] += 1
        c[1] += dur[i] / n
        c[2] += add[i] / n
    print(f"{per} kernels a step, {n} steps traced; step span {wall / n:.1f} us (first kernel start to last end)")
    print(f"{'kernel':40s} {'calls':>5s} {'mean dur us':>12s} {'mean added us':>14s} {'added us':>9s}")
    for short, (calls, d, a) in sorted(by_name.items(), key=lambda kv: -kv[1][2]):
        print(f"{short[:40]:40s} {calls:5d} {d / calls:12.2f} {a / calls:14.2f} {a:9.1f}")
    print("first layer's ops in order (mean dur, mean added):")
    for i in range(min(per, 12)):
        print(f"  {i:3d} {names[i].split('(')[0][:48]:48s} {dur[i] / n:7.2f} {add[i] / n:7.2f}")
    lib.qn_context_free(ctx)
    lib.qn_model_free(model)
    lib.qn_device_close(dev)


if __name__ == "__main__":
    main()
