"""Tools for testing recipes and backends: the in-process mock backend, the ssh test bed, and
the contract suite every transport must pass (importable by third-party plugin packages)."""
