"""run.py: runs every tests/api/test_*.py against the real binary; last line N passed, N failed."""
import importlib
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    only = sys.argv[1:]
    modules = sorted(f[:-3] for f in os.listdir(here) if f.startswith("test_") and f.endswith(".py"))
    passed = failed = 0
    try:
        for name in modules:
            if only and name not in only:
                continue
            start = len(harness.TESTS)
            try:
                importlib.import_module(name)
            except Exception:
                print("FAIL %s: import error\n%s" % (name, traceback.format_exc()))
                failed += 1
                continue
            for fn in harness.TESTS[start:]:
                t0 = time.time()
                try:
                    fn()
                    passed += 1
                    print("ok   %s.%s (%.2fs)" % (name, fn.__name__, time.time() - t0))
                except Exception as e:
                    failed += 1
                    detail = traceback.format_exc() if not isinstance(e, AssertionError) else str(e)
                    print("FAIL %s.%s: %s" % (name, fn.__name__, detail))
    finally:
        try:
            harness.shutdown_shared()
        except AssertionError as e:
            failed += 1
            print("FAIL the shared server: %s" % e)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
