"""The documentation site builds with warnings as errors (`tools/build_docs.py`: mkdocs
--strict over the README, the guides, the rendered tutorials and one mkdocstrings page per
public module; a public name without a docstring fails it too)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_site_builds_strict_with_api_pages_and_tutorials(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_docs.py"), "--site-dir", str(site)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for page in ("index.html", "methods/index.html", "api/keras_mim.models.vit_encoder/index.html",
                 "api/keras_mim.evaluation.anomaly/index.html", "tutorials/01_mae_quickstart/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api/keras_mim.models.vit_encoder/index.html").read_text()
    assert "ViTEncoder" in api and "from_keras_hub" in api


def test_missing_docstrings_are_found():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import build_docs
    finally:
        sys.path.pop(0)
    assert build_docs.missing_docstrings() == []
    assert "keras_mim.models.vit_encoder" in build_docs.api_modules()
    assert not any(m.startswith("keras_mim.cli.") for m in build_docs.api_modules())
