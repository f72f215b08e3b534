"""`cmake --install` into a fresh prefix gives a library, header and
pkg-config file that a program outside the tree builds and links against,
shared and static."""
import os
import subprocess
import sys
import tempfile

from quanta_test_util import check, summary

build = os.path.dirname(os.environ["QUANTA_BIN"])
program = r"""
#include <quanta.h>
#include <stdio.h>
int main(void) {
    qn_device *d;
    if (qn_device_open(QN_BACKEND_CPU, 0, &d) != QN_OK) return 1;
    printf("%s\n", qn_version());
    qn_device_close(d);
    return 0;
}
"""

with tempfile.TemporaryDirectory() as tmp:
    prefix = os.path.join(tmp, "prefix")
    r = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True)
    check("install", r.returncode == 0, r.stderr)
    for f in ["include/quanta.h", "lib/libquanta.a", "lib/libquanta.so", "lib/pkgconfig/quanta.pc", "bin/quanta"]:
        check("installed " + f, os.path.exists(os.path.join(prefix, f)))
    src = os.path.join(tmp, "p.c")
    with open(src, "w") as f:
        f.write(program)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "quanta"], env=env, capture_output=True, text=True)
    check("pkg-config", flags.returncode == 0, flags.stderr)
    libdir = os.path.join(prefix, "lib")
    exe = os.path.join(tmp, "p")
    r = subprocess.run(["cc", src, "-o", exe, "-Wl,-rpath," + libdir] + flags.stdout.split(), capture_output=True, text=True)
    check("build against the shared library", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        out = subprocess.run([exe], capture_output=True, text=True)
        check("run shared", out.returncode == 0 and out.stdout.strip() == "0.1.0", out.stdout + out.stderr)
    static = subprocess.run(["pkg-config", "--static", "--cflags", "--libs", "quanta"], env=env, capture_output=True,
                            text=True).stdout.split()
    static = [a for a in static if a != "-lquanta"] + [os.path.join(libdir, "libquanta.a")]
    r = subprocess.run(["cc", src, "-o", exe + "s"] + static + ["-lpthread", "-ldl", "-lm"], capture_output=True, text=True)
    check("build against the static library", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        out = subprocess.run([exe + "s"], capture_output=True, text=True)
        check("run static", out.returncode == 0, out.stderr)
    ldd = subprocess.run(["ldd", os.environ["QUANTA_BIN"]], capture_output=True, text=True).stdout
    check("the tool does not link libcuda or libnvrtc", "libcuda" not in ldd and "libnvrtc" not in ldd, ldd)

sys.exit(summary())
