"""Property and differential fuzz tests (a package so ``tests.fuzz.smuggling`` imports)."""
