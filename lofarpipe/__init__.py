"""The LOFAR pipeline framework's import paths, kept so that existing recipes run unchanged.

Each module re-exports lofarexec's objects; there is no second implementation here.
"""
