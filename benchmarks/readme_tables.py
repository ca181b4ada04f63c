"""Markdown tables from benchmarks/train_speed.py results, optionally written into docs/speed.md.

    python benchmarks/readme_tables.py                                   # results/train_speed_*.json
    python benchmarks/readme_tables.py benchmarks/results/train_speed_cpu.json
    python benchmarks/readme_tables.py --update docs/speed.md            # between the markers

`--update FILE` replaces the text between the lines `<!-- speed-table:start -->` and
`<!-- speed-table:end -->` (both must be present, once each, start first) and leaves the
rest of the file as it is. The measured tables live in docs/speed.md (the README links to
it), so that is the file to pass.
"""

import argparse
import glob
import json
import os
import sys

from train_speed_lib import render_tables

HERE = os.path.dirname(os.path.abspath(__file__))
START, END = "<!-- speed-table:start -->", "<!-- speed-table:end -->"


def load(path):
    with open(path) as f:
        result = json.load(f)
    if result.get("benchmark") != "train_speed":
        raise ValueError(f"{path} is not a train_speed result (benchmark={result.get('benchmark')!r}).")
    return result


def render(paths):
    """One section per result file: a heading naming the machine, then its tables."""
    sections = []
    for path in paths:
        result = load(path)
        gpu = result["machine"].get("gpu")
        where = gpu or f"{result['machine'].get('cpu_cores', '?')}-core CPU"
        sections.append(f"#### MAE training speed, {where} ({result['created'][:10]}, "
                        f"`{os.path.basename(path)}`)\n\n{render_tables(result)}")
    return "\n".join(sections)


def update(readme, text):
    """`readme`'s content with the block between the markers replaced by `text`."""
    with open(readme) as f:
        content = f.read()
    if content.count(START) != 1 or content.count(END) != 1 or content.index(START) > content.index(END):
        raise ValueError(f"{readme} must contain the line {START} once, followed by the line {END} once; "
                         f"found {content.count(START)} start and {content.count(END)} end marker(s).")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{text.rstrip()}\n{END}{tail}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", help="train_speed JSON files (default benchmarks/results/train_speed_*.json)")
    p.add_argument("--update", metavar="FILE", default=None,
                   help="rewrite the marked block of this file (the tables live in docs/speed.md)")
    args = p.parse_args(argv)
    paths = args.paths or sorted(glob.glob(os.path.join(HERE, "results", "train_speed_*.json")))
    if not paths:
        p.error("no result file given and none found in benchmarks/results/")
    try:
        text = render(paths)
        new = update(args.update, text) if args.update else None
    except (OSError, ValueError, KeyError) as error:
        print(f"readme_tables: {error}", file=sys.stderr)
        return 2
    if new is None:
        print(text)
    else:
        with open(args.update, "w") as f:
            f.write(new)
        print(f"readme_tables: updated {args.update} from {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
