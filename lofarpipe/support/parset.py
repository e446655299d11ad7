"""``lofarpipe.support.parset`` is not provided: the framework's ``Parset`` is LOFAR's C++
``lofar.parameterset``. Importing this module ends a recipe with one line naming what to
install (:class:`~lofarpipe.support.lofarexceptions.LofarBindingsMissing`, an ImportError).
"""

from lofarpipe.support.lofarexceptions import missing_bindings

raise missing_bindings("lofarpipe.support.parset", "lofar.parameterset")
