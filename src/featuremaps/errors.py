"""One exception type for mistakes a user can fix: the CLI prints it on one line and exits with 2."""


class UserError(Exception):
    """A problem with the user's input, stated with its fix (``str(err)`` is shown as is)."""
