"""``lofarpipe.support``: the seed's module names, re-exporting lofarexec."""
