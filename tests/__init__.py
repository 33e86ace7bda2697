"""EWG tests (a package, so test modules can share helpers such as the broker fixture)."""
