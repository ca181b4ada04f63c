"""Write the README's methods table from the method registry (`keras_mim.models.METHODS`).

    python tools/readme_methods.py           # rewrite the table between the markers
    python tools/readme_methods.py --check   # exit 1 if the README's table is out of date

The table sits between `<!-- methods-table:begin -->` and `<!-- methods-table:end -->`;
tests/test_readme_methods.py runs the check, so a new method shows up in the README by
running this command, never by hand.
"""

import argparse
import pathlib
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- methods-table:begin -->", "<!-- methods-table:end -->"


def methods_table():
    """The Markdown table of every registered method, by family then year."""
    from keras_mim.models.methods import FAMILIES, get_method_spec, list_methods

    rows = ["| `--method` | class | trains on | learns from | test preset | paper | official code |",
            "|---|---|---|---|---|---|---|"]
    for name, description in list_methods().items():
        spec = get_method_spec(name)
        data = spec.data if not spec.two_views else f"view pairs of {spec.data}"
        learns = FAMILIES[spec.family] + ("; a frozen teacher (`--teacher`)" if spec.teacher else "")
        code = f"[{spec.code}](https://github.com/{spec.code})" if spec.code else "not public"
        rows.append(f"| `{name}` | `{spec.model.__name__}` | {data} | {learns} | `{spec.test_preset}` | "
                    f"{spec.paper} | {code} |")
    return "\n".join(rows)


def with_table(text):
    """`text` (the README) with the table between the markers replaced."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {BEGIN} / {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{methods_table()}\n{END}{tail}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the table is current")
    args = parser.parse_args()
    text = README.read_text()
    new = with_table(text)
    if args.check:
        if new != text:
            print("README.md's methods table is out of date: run python tools/readme_methods.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
