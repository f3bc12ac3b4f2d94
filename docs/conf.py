"""Sphinx configuration of the dlogdet documentation (``make docs`` builds it with warnings as errors).

What is generated at build time, and from what, is in ``_ext/dlogdet_docs.py``: the API pages (from
``dlogdet.__all__`` and ``dlogdet.ntk.__all__``), the configuration reference (from ``dlogdet.yaml`` and its
comments), the troubleshooting reference (from the subclasses of ``dlogdet.DlogdetError`` and the ``Status``
members), the command-line reference (from the ``dlogdet`` console script's parser), the decision guide's figure
(from ``_data/cost-accuracy.csv``) and the example notebooks (copied from ``notebooks/`` and executed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import dlogdet  # noqa: E402

project = "dlogdet"
author = "the dlogdet developers"
copyright = "the dlogdet developers"
release = dlogdet.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_nb",
    "sphinx_design",
    "sphinx_copybutton",
    "sphinxarg.ext",
    "dlogdet_docs",
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute", "_templates", "_data", "_generated"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- cross-references: every one must resolve (make docs runs sphinx-build -n -W) ---------------------------------
nitpicky = True
smartquotes_action = "qe"        # curly quotes and ellipses, but keep "--option" as typed (no en dash)
default_role = "py:obj"          # `name` in docstrings links where it can (and must resolve, being nitpicky)
add_module_names = False
python_display_short_literal_types = True

# -- API pages ------------------------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = True
autodoc_typehints = "none"        # the numpydoc docstrings state the types; the signature shows names and defaults
autodoc_member_order = "bysource"
autodoc_default_options = {"exclude-members": "__init__, __new__"}
numpydoc_show_class_members = False   # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set = set()

# -- MyST and notebooks ---------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "substitution", "attrs_inline"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("DLOGDET_DOCS_EXECUTE", "cache")   # "off" for a quick look at the text
nb_execution_timeout = 600
nb_execution_raise_on_error = True    # a failing cell fails the build
nb_execution_in_temp = True           # what the notebooks write (Dask scratch, job logs) stays out of the tree
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML -----------------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"dlogdet {release}"
html_static_path = ["_static"]
html_css_files = ["dlogdet.css"]
html_show_sourcelink = True
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 7,   # every top-level page in the bar (the theme's default hides two in "More")
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "icon_links": [],
}
# no section navigation on pages without sub-pages, and on the notebooks (their code needs the width)
html_sidebars = {"index": [], "getting-started": [], "choosing-a-method": [], "architecture": [], "examples/0*": []}
html_context = {"default_mode": "light"}
