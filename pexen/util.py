"""The root of pexen's error and warning tree (kept here: 0.0.x imports them from here)."""


class PexenError(Exception):
    """Base of every error pexen raises on purpose."""


class PexenWarning(UserWarning):
    """Warnings the scheduler emits (skipped tasks, locks held at exit, ...)."""


__all__ = ["PexenError", "PexenWarning"]
