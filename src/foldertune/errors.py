"""The one exception type for mistakes a user can fix.

The command line prints a `UserError` as a single sentence and exits with code 2; anything else is a bug in
foldertune and keeps its traceback. In Python it is a `ValueError` (`foldertune.UserError`), and an unknown keyword
of an API function is an `UnknownKeyword`, also a `TypeError` as Python's own is.
"""


class UserError(ValueError):
    """A problem with the user's input (a file, a folder or a flag) and how to fix it, in one sentence."""


class UnknownKeyword(UserError, TypeError):
    """An API function was given a keyword it does not take (the sentence suggests the closest one)."""
