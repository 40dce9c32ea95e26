"""Runs a unittest suite and writes JUnit XML to $XML_OUTPUT_FILE, one
testcase per test (skipped ones marked), so that CI counts each case."""
import os
import unittest
import xml.etree.ElementTree as ET


class JUnitResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []  # (test, failure text or skip reason or None, skipped)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.cases.append((test, None, False))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.cases.append((test, self._exc_info_to_string(err, test), False))

    def addError(self, test, err):
        super().addError(test, err)
        self.cases.append((test, self._exc_info_to_string(err, test), False))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.cases.append((test, reason, True))


def run_with_junit(suite: unittest.TestSuite, name: str) -> int:
    """Runs `suite`; 0 when it passed."""
    result = unittest.TextTestRunner(resultclass=JUnitResult, verbosity=2).run(suite)
    out = os.environ.get("XML_OUTPUT_FILE")
    if out:
        root = ET.Element("testsuites")
        suite_el = ET.SubElement(root, "testsuite", name=name, tests=str(len(result.cases)))
        for test, text, skipped in result.cases:
            case = ET.SubElement(suite_el, "testcase", name=test.id().split(".")[-1],
                                 classname=type(test).__name__, status="run")
            if skipped:
                ET.SubElement(case, "skipped", message=text)
            elif text:
                ET.SubElement(case, "failure", message="failed").text = text
        ET.ElementTree(root).write(out, encoding="unicode")
    return 0 if result.wasSuccessful() else 1
