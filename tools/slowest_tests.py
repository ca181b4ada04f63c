"""Print the slowest tests of one or more pytest JUnit XML reports (tools/test.sh's passes).

    python tools/slowest_tests.py once.xml jax.xml ... [--top 15]
"""

import argparse
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
    args = parser.parse_args()
    rows = sorted(test_times([p for p in args.reports if pathlib.Path(p).exists()]), reverse=True)
    print(f"{args.top} slowest tests ({len(rows)} in all, {sum(r[0] for r in rows):.0f} s of test time):")
    for seconds, name, test_id in rows[: args.top]:
        print(f"  {seconds:7.1f} s  {name:<10}  {test_id}")


if __name__ == "__main__":
    main()
