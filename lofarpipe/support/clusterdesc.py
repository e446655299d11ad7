"""``lofarpipe.support.clusterdesc`` is not provided: the framework read cluster descriptions
with LOFAR's C++ ``lofar.parameterset``. lofarexec takes its hosts from ``pipeline.cfg`` and
the recipe's mapfiles; importing this module ends a recipe with one line saying so.
"""

from lofarpipe.support.lofarexceptions import missing_bindings

raise missing_bindings("lofarpipe.support.clusterdesc", "lofar.parameterset")
