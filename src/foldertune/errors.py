"""The one exception type for mistakes a user can fix.

The command line prints a `UserError` as a single sentence and exits with code 2; anything else is a bug in
foldertune and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input (a file, a folder or a flag) and how to fix it, in one sentence."""
