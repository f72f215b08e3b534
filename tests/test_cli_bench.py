#!/usr/bin/env python3
"""`quanta bench` picks its cases: a case's name runs that case, a family
name all of its cases in table order, an unknown name fails with a message
naming it. No family of several cases may share a case's name (then the
case could not be run alone). Run on the CPU backend, where the GPU cases
say they are skipped, so it takes no time.
"""
import sys

from quanta_test_util import check, quanta, summary


def headers(*args):
    r = quanta("bench", *args, "--backend", "cpu")
    return r.returncode, [l.split(":")[0][3:] for l in r.stdout.splitlines() if l.startswith("== ")]


def main():
    listed = quanta("bench", "--list")
    rows = [l.split() for l in listed.stdout.splitlines() if l.strip()]
    check("--list", listed.returncode == 0 and len(rows) > 5, listed.stderr)
    family = {r[0]: r[1] for r in rows}
    for name in family:
        members = [n for n, f in family.items() if f == name]
        check("case %s alone" % name, members in ([], [name]), "family %s is %s" % (name, members))

    rc, got = headers("--case", "matvec")
    check("a case by its name", rc == 0 and got == ["matvec"], "%d %s" % (rc, got))
    rc, got = headers("--case", "qmatmul")
    want = [name for name, fam in family.items() if fam == "qmatmul"]
    check("a family", rc == 0 and got == want and len(want) > 1, "%d %s, want %s" % (rc, got, want))
    r = quanta("bench", "--case", "no-such-case", "--backend", "cpu")
    check("unknown name", r.returncode == 2 and "no-such-case" in r.stderr, "%d %s" % (r.returncode, r.stderr))
    return summary()


if __name__ == "__main__":
    sys.exit(main())
