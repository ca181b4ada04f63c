"""Check (and optionally clean) the tutorial notebooks in examples/.

    python tools/check_notebooks.py            # report problems, exit 1 if any
    python tools/check_notebooks.py --strip    # first clear outputs and execution counts

Rules: valid nbformat 4; the first cell is a markdown title with the Colab badge pointing
at the notebook's own file; the second is the install cell (installs keras-mim on Colab
only); the third sets KERAS_BACKEND with `os.environ.setdefault` (CI's choice wins) and
reads KERAS_MIM_EXAMPLE_EPOCHS; no outputs or execution counts are stored.
tests/test_notebooks.py runs the same checks.
"""

import argparse
import pathlib
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
COLAB = "https://colab.research.google.com/github/keras-mim/keras-mim/blob/main/examples/"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
INSTALL = '%pip install -q "keras-mim @ git+https://github.com/keras-mim/keras-mim"'


def notebooks():
    """The tutorial notebooks, sorted by name."""
    return sorted(EXAMPLES.glob("*.ipynb"))


def problems(path):
    """A list of what is wrong with the notebook at `path` (empty when it is fine)."""
    import nbformat

    path = pathlib.Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - any parse or schema error is the answer
        return [f"not a valid nbformat 4 notebook: {error}"]
    found = []
    cells = nb.cells
    if len(cells) < 4:
        return [f"only {len(cells)} cells; expected title, install, backend and content cells"]
    title, install, backend = cells[:3]
    if title.cell_type != "markdown" or not title.source.startswith("# "):
        found.append("cell 1 must be a markdown title ('# ...')")
    if BADGE not in title.source or f"({COLAB}{path.name})" not in title.source:
        found.append(f"cell 1 must hold the Colab badge linking to {COLAB}{path.name}")
    if install.cell_type != "code" or '"google.colab" in sys.modules' not in install.source \
            or INSTALL not in install.source:
        found.append(f"cell 2 must install keras-mim on Colab only: if \"google.colab\" in sys.modules: {INSTALL}")
    if backend.cell_type != "code" or 'os.environ.setdefault("KERAS_BACKEND"' not in backend.source \
            or "KERAS_MIM_EXAMPLE_EPOCHS" not in backend.source:
        found.append("cell 3 must choose the backend with os.environ.setdefault(\"KERAS_BACKEND\", ...) "
                     "and read KERAS_MIM_EXAMPLE_EPOCHS")
    if backend.source.find("KERAS_BACKEND") > backend.source.find("import keras") >= 0:
        found.append("cell 3 imports keras before setting KERAS_BACKEND")
    for index, cell in enumerate(cells, 1):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            found.append(f"cell {index} stores outputs; run `python tools/check_notebooks.py --strip`")
    return found


def strip(path):
    """Clear outputs and execution counts in place; True when the file changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks (default: examples/*.ipynb)")
    parser.add_argument("--strip", action="store_true", help="clear outputs and execution counts first")
    args = parser.parse_args(argv)
    paths = [pathlib.Path(p) for p in args.paths] or notebooks()
    status = 0
    for path in paths:
        if args.strip and strip(path):
            print(f"{path}: outputs cleared")
        for problem in problems(path):
            print(f"{path}: {problem}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
