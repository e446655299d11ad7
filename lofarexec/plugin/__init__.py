"""Plugin machinery: the hook specifications and the manager that loads plugins."""
