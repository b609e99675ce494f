"""Tests of the harness: suites, contexts, the CLI."""
