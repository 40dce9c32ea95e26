#!/usr/bin/env python3
"""Counts GoogleTest cases in Bazel's test.xml files.

Usage: count_tests.py TESTLOGS_DIR [FAILED_TARGET ...]
Prints "P F" (passed, failed). A test binary that crashed before writing its own
XML leaves Bazel's generated one, whose single case carries the failure, so a
crash still counts as failed. A target Bazel reports as failed although every
case in its XML passed (a sanitizer report at exit, say) counts as one more
failure.
"""
import pathlib
import re
import sys
import xml.etree.ElementTree as ET


def count(xml_file):
    """(passed, failed) cases in one test.xml."""
    passed = failed = 0
    try:
        root = ET.parse(xml_file).getroot()
    except (ET.ParseError, OSError):
        return 0, 1
    for case in root.iter("testcase"):
        if case.get("status") == "notrun" or case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        else:
            passed += 1
    return passed, failed


def main() -> int:
    testlogs = pathlib.Path(sys.argv[1])
    passed = failed = 0
    for xml_file in sorted(testlogs.rglob("test.xml")):
        # Left over from a local --runs_per_test run, not from this one.
        if any(re.fullmatch(r"run_\d+_of_\d+", part) for part in xml_file.parts):
            continue
        p, f = count(xml_file)
        passed += p
        failed += f
    for label in sys.argv[2:]:
        path = label.lstrip("/").replace(":", "/")
        _, f = count(testlogs / path / "test.xml")
        if f == 0:
            failed += 1
    print(passed, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
