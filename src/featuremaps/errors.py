"""One exception type for mistakes a user can fix: the CLI prints it on one line and exits with 2."""


class UserError(Exception):
    """A problem with the user's input, stated with its fix (``str(err)`` is shown as is)."""


def brief(error: BaseException | str, limit: int = 160) -> str:
    """The first line of ``error`` for a one-line message, at most ``limit`` characters, cut between words (a
    path or a name is never cut in the middle; `` ...`` marks the cut); the exception's type if it says nothing."""
    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0]
    return f"{cut if len(cut) > limit // 2 else first[:limit]} ..."
