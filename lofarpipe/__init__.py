"""The LOFAR pipeline framework's import paths, kept so that existing recipes run unchanged.

Each module re-exports lofarexec's objects; there is no second implementation here.
A ``lofarpipe/`` folder elsewhere on ``sys.path`` (the later framework's ``lofarpipe/recipes``
tree, which its unit tests import as ``lofarpipe.recipes.master.<name>``) joins this package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
