"""``import lofarpipe.support.lofaringredient as ingredient``: the fields recipes declare.

Every name of :mod:`lofarexec.ingredients` (``StringField``, ``LOFARingredient``, ...).
"""

from lofarexec.ingredients import *  # noqa: F403 - the same names, by construction
from lofarexec.ingredients import __all__  # noqa: F401
