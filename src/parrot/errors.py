"""Errors a user can cause.

A `ParrotError` carries one sentence that says what was wrong and what to do. The CLI
prints it and exits with `exit_code` (2 by default: bad input) instead of a traceback.
"""


class ParrotError(Exception):
    """A user's mistake: bad input, a missing file, an impossible setting."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
