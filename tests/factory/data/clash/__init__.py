"""Two modules with a task of the same name."""
