"""Build the documentation site (mkdocs, material theme, API pages by mkdocstrings):

    python tools/build_docs.py            # writes site/ (open site/index.html)
    python tools/build_docs.py --serve    # live preview

The site's pages are assembled into `build/docs_src/` from what the repository already
holds, so nothing is written twice: the README becomes the home page, docs/*.md the guides,
the tutorial notebooks are rendered to Markdown (their saved outputs: text and figures), and
one API page per public module of keras_mim holds `::: module` for mkdocstrings. Links between
them are rewritten to the site's pages; links to other repository files (benchmark JSON,
example scripts) point at copies placed in the site. `mkdocs build --strict` turns every
warning (a broken link, a docstring whose Args name a parameter the function lacks, a
section that does not parse) into an error, and a public module, class or function without
a docstring fails before mkdocs runs; CI runs this (tests/test_docs_site.py).

Notebooks are rendered here rather than with mkdocs-jupyter: that plugin pulls nbconvert,
jupyterlab's lexers and a second theme for what is ~40 lines on nbformat (already a test
dependency).
"""

import argparse
import ast
import base64
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "build" / "docs_src"
GUIDES = ["demo", "data", "methods", "audio", "points", "multimodal", "evaluation", "checkpoints", "speed", "study", "value", "ci"]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
#: Modules without an API page: the generated registry table, the CLI's argument plumbing.
PRIVATE = ("keras_mim.registry_snapshot", "keras_mim.cli.", "keras_mim.compat")
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def api_modules():
    """Public modules of keras_mim, in package order (one API page each)."""
    names = []
    for path in sorted((ROOT / "keras_mim").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if parts[-1].startswith("_") and parts[-1] != "__init__" or name.startswith(PRIVATE) or name == "keras_mim.cli":
            continue
        names.append(name)
    return names


def missing_docstrings():
    """`module.name` of each public module, class and function of the API pages without a
    docstring (mkdocs does not warn about those; the build fails on them here)."""
    missing = []
    for module in api_modules():
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        if not path.exists():
            path = ROOT.joinpath(*module.split("."), "__init__.py")
        tree = ast.parse(path.read_text())
        if not ast.get_docstring(tree):
            missing.append(f"{module} (module)")
        for node in tree.body:
            public = isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
            if public and not ast.get_docstring(node):
                missing.append(f"{module}.{node.name}")
    return missing


def page_of(target, page_dir):
    """The site path a repository-relative link target becomes, or None to keep it."""
    if re.match(r"[a-z]+://|mailto:", target):
        return None
    path = (page_dir / target).resolve()
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return None
    text = rel.as_posix()
    if text == "README.md":
        return "index.md"
    if text.startswith("docs/") and text.endswith(".md"):
        return text[len("docs/"):]
    if text.startswith("examples/") and text.endswith(".ipynb"):
        return f"tutorials/{rel.stem}.md"
    if path.is_file():  # any other repository file: copied into the site under files/
        destination = SOURCE / "files" / text
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        return f"files/{text}"
    return None


def rewrite_links(text, page_dir, site_page):
    """Links of a page at `page_dir` (repository folder) rewritten for `site_page`."""
    depth = site_page.count("/")

    def replace(match):
        target, anchor = match.group(1), match.group(2) or ""
        new = page_of(target, page_dir)
        if new is None:
            return match.group(0)
        return f"]({'../' * depth}{new}{anchor})"

    return LINK.sub(replace, text)


def render_notebook(path):
    """A notebook as Markdown: its Markdown cells, code cells as Python blocks, and their saved
    outputs (text as a block, PNG figures as image files beside the page)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    figures = SOURCE / "tutorials" / f"{path.stem}_files"
    lines, count = [], 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            lines += [cell.source, ""]
        elif cell.cell_type == "code" and cell.source.strip():
            lines += ["```python", cell.source, "```", ""]
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "image/png" in data:
                    figures.mkdir(parents=True, exist_ok=True)
                    count += 1
                    (figures / f"figure_{count}.png").write_bytes(base64.b64decode(data["image/png"]))
                    lines += [f"![output]({path.stem}_files/figure_{count}.png)", ""]
                text = output.get("text") or data.get("text/plain")
                if text and "image/png" not in data:
                    lines += ["```text", "".join(text).rstrip(), "```", ""]
    return rewrite_links("\n".join(lines), path.parent, f"tutorials/{path.stem}.md")


def assemble():
    """Write the site's Markdown sources into build/docs_src; returns the mkdocs nav."""
    shutil.rmtree(SOURCE, ignore_errors=True)
    SOURCE.mkdir(parents=True)
    (SOURCE / "index.md").write_text(rewrite_links((ROOT / "README.md").read_text(), ROOT, "index.md"))
    for name in GUIDES:
        (SOURCE / f"{name}.md").write_text(rewrite_links((ROOT / "docs" / f"{name}.md").read_text(), ROOT / "docs",
                                                         f"{name}.md"))
    shutil.copytree(ROOT / "docs" / "figures", SOURCE / "figures")
    tutorials = []
    (SOURCE / "tutorials").mkdir()
    for path in NOTEBOOKS:
        (SOURCE / "tutorials" / f"{path.stem}.md").write_text(render_notebook(path))
        tutorials.append({path.stem.split("_", 1)[1].replace("_", " ").capitalize(): f"tutorials/{path.stem}.md"})
    api = []
    (SOURCE / "api").mkdir()
    for module in api_modules():
        (SOURCE / "api" / f"{module}.md").write_text(f"# `{module}`\n\n::: {module}\n")
        api.append({module: f"api/{module}.md"})
    guides = [{name.capitalize(): f"{name}.md"} for name in GUIDES]
    return [{"Home": "index.md"}, {"Guides": guides}, {"Tutorials": tutorials}, {"API reference": api}]


def config(nav, site_dir):
    """The mkdocs configuration (YAML is JSON's superset: written as JSON, no YAML library)."""
    import json

    return json.dumps({
        "site_name": "keras_mim",
        "site_description": "Masked image modeling in Keras 3, on TensorFlow, JAX and PyTorch.",
        "docs_dir": str(SOURCE),
        "site_dir": str(site_dir),
        "theme": {"name": "material", "features": ["navigation.sections", "content.code.copy"]},
        "nav": nav,
        "markdown_extensions": ["tables", "admonition", "toc", "pymdownx.superfences"],
        "plugins": ["search", {"mkdocstrings": {"handlers": {"python": {
            "paths": [str(ROOT)],
            "options": {"docstring_style": "google",
                        # Keras-style docstrings: types live in the prose, one Returns entry
                        "docstring_options": {"warn_missing_types": False, "returns_multiple_items": False,
                                              "warn_unknown_params": True},
                        "show_source": False, "show_root_heading": False,
                        "members_order": "source", "filters": ["!^_"], "show_submodules": False},
        }}}}],
        "validation": {"links": {"not_found": "warn", "anchors": "warn", "absolute_links": "warn",
                                 "unrecognized_links": "warn"}},
    }, indent=1)


def main(argv=None):
    p = argparse.ArgumentParser(description="Build the keras_mim documentation site with mkdocs.")
    p.add_argument("--serve", action="store_true", help="serve with live reload instead of building")
    p.add_argument("--site-dir", default=str(ROOT / "site"), help="where the site is written (default site/)")
    args = p.parse_args(argv)
    missing = missing_docstrings()
    if missing:
        print("Public names without a docstring (write one):\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    nav = assemble()
    path = ROOT / "build" / "mkdocs.yml"
    path.write_text(config(nav, os.path.abspath(args.site_dir)))
    command = [sys.executable, "-m", "mkdocs", "serve" if args.serve else "build", "-f", str(path)]
    if not args.serve:
        command.append("--strict")
    return subprocess.call(command, cwd=ROOT, env=dict(os.environ, DISABLE_MKDOCS_2_WARNING="true"))


if __name__ == "__main__":
    sys.exit(main())
