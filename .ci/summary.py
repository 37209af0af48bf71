"""Adds up cargo's `test result:` lines into one closing line: `tests: N passed, N failed`."""
import re
import sys

passed = failed = ignored = 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
        if m:
            passed += int(m.group(1))
            failed += int(m.group(2))
            ignored += int(m.group(3))
suffix = f", {ignored} skipped" if ignored else ""
print(f"tests: {passed} passed, {failed} failed{suffix}")
sys.exit(1 if failed or passed == 0 else 0)
