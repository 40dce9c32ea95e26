#!/usr/bin/env python3
"""Counts GoogleTest cases in Bazel's test.xml files.

Usage: count_tests.py TESTLOGS_DIR
Prints "P F" (passed, failed). A test binary that crashed before writing its own
XML leaves Bazel's generated one, whose single case carries the failure, so a
crash still counts as failed.
"""
import pathlib
import re
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    passed = failed = 0
    for xml_file in sorted(pathlib.Path(sys.argv[1]).rglob("test.xml")):
        # Left over from a local --runs_per_test run, not from this one.
        if any(re.fullmatch(r"run_\d+_of_\d+", part) for part in xml_file.parts):
            continue
        try:
            root = ET.parse(xml_file).getroot()
        except ET.ParseError:
            failed += 1
            continue
        for case in root.iter("testcase"):
            if case.get("status") == "notrun" or case.find("skipped") is not None:
                continue
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            else:
                passed += 1
    print(passed, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
