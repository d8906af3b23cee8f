"""Sphinx configuration of bidsqc's manual (MyST Markdown, furo).

    python -m sphinx -W -b html docs build/docs

Before the build, the command-line reference (docs/_generated/cli.md) is written from the
parsers, and the artifact pictures (docs/_generated/artifacts/*.png) are made by the simulator
from nilearn's MNI152 template, so neither can drift from the code."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS))

import bidsqc  # noqa: E402
from make_generated import make_generated  # noqa: E402

project = "bidsqc"
author = "the bidsqc developers"
copyright = "the bidsqc developers, Apache-2.0"
version = release = bidsqc.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = f"bidsqc {release}"
autodoc_typehints = "none"
autodoc_mock_imports = []
suppress_warnings = ["myst.xref_missing"]  # links to repository files (scripts/, benchmarks/) outside the manual

make_generated(DOCS / "_generated")
