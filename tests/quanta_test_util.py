"""What the Python tests share: a tally of checks and a runner for the CLI.

Not named test_*.py, because CMake runs every tests/test_*.py as a test of
its own; the tests import it from their own folder (python3 puts a script's
folder first on sys.path).
"""
import os
import subprocess

passed = failed = 0


def check(name, ok, detail=""):
    """Count one check; print a failure (and keep going, to see them all)."""
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail))


def summary():
    """Print the tally; return the exit status: 1 when any check failed."""
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def quanta(*args):
    """Run the CLI (QUANTA_BIN, read here so tests without it can import this)."""
    return subprocess.run([os.environ["QUANTA_BIN"], *args], capture_output=True, text=True)
