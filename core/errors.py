"""The project's exceptions.

`UserError` is bad input or a missing file: something the person running zit can fix. The CLI turns
it into one line on stderr and exit code 2. Every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix. `str(err)` names the problem; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text


class ModelNotFoundError(UserError):
    """Model files (weights, tokenizer, GGUF) that are not on this machine."""
