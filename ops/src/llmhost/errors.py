"""The one exception the CLI turns into a one-line message and a non-zero exit code."""

from __future__ import annotations


class LlmhostError(Exception):
    """A failure the user can act on; ``str()`` is one line that says what and what to do."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
