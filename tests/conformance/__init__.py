"""Tests of the conformance backends and mutants."""
