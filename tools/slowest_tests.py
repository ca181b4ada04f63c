"""Print the slowest tests, and the test files costing the most, of one or more pytest JUnit
XML reports (tools/test.sh's passes).

    python tools/slowest_tests.py tensorflow.xml jax.xml ... [--top 15] [--files 10]
"""

import argparse
import collections
import pathlib
import xml.etree.ElementTree as ET


def test_times(paths):
    """[(seconds, pass name, test id)] of every test case in the reports."""
    rows = []
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
            rows.append((float(case.get("time", 0.0)), pathlib.Path(path).stem, test_id))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--files", type=int, default=10, help="how many of the costliest test files")
    args = parser.parse_args()
    rows = sorted(test_times([p for p in args.reports if pathlib.Path(p).exists()]), reverse=True)
    print(f"{args.top} slowest tests ({len(rows)} in all, {sum(r[0] for r in rows):.0f} s of test time):")
    for seconds, name, test_id in rows[: args.top]:
        print(f"  {seconds:7.1f} s  {name:<10}  {test_id}")
    per_file = collections.Counter()
    for seconds, name, test_id in rows:
        module, _, last = test_id.split("::")[0].rpartition(".")
        per_file[module if last[:1].isupper() else f"{module}.{last}"] += seconds  # a Test class: its module
    print(f"{args.files} costliest test modules (all passes together):")
    for module, seconds in per_file.most_common(args.files):
        print(f"  {seconds:7.1f} s  {module}")


if __name__ == "__main__":
    main()
