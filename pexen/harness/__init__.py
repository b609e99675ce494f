"""The test-suite use case: start/resume runs, the CLI."""
