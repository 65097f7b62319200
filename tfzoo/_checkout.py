"""A source checkout sees the installed layout.

The wheel installs the repository's export/, serving/ and configs/ folders as tfzoo.export,
tfzoo.serving and tfzoo.configs (pyproject.toml, `[tool.setuptools.package-dir]`), so that an
install adds only `tfzoo` to site-packages. In a checkout those folders stand next to the
package, where `python -m export` and `python -m serving.dev_server` find them from the
repository root; this finder gives them their tfzoo names too, so library code imports
`tfzoo.export` whether installed or not.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

# tfzoo name -> the repository folder; the same mapping as pyproject.toml's package-dir.
MAPPED = {"tfzoo.export": "export", "tfzoo.serving": "serving", "tfzoo.configs": "configs"}


class CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds the MAPPED packages in the repository `root`; submodules then come from their
    package's `__path__` as usual."""

    def __init__(self, root: str):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        folder = MAPPED.get(fullname)
        if folder is None:
            return None
        location = os.path.join(self.root, folder)
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(location, "__init__.py"), submodule_search_locations=[location])


def install(package_dir: str) -> None:
    """Installs the finder when `package_dir` (tfzoo's folder) is a checkout's: the mapped
    folders are beside it, not inside it (an installed wheel has them inside)."""
    root = os.path.dirname(package_dir)
    if os.path.isdir(os.path.join(package_dir, "export")) or not all(
            os.path.isfile(os.path.join(root, d, "__init__.py")) for d in MAPPED.values()):
        return
    if not any(isinstance(f, CheckoutFinder) and f.root == root for f in sys.meta_path):
        # First: an editable install of another checkout (a finder after the path finder)
        # must not answer for this one.
        sys.meta_path.insert(0, CheckoutFinder(root))
