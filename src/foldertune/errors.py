"""The one exception type for mistakes a user can fix.

The command line prints a `UserError` as a single sentence and exits with code 2; anything else is a bug in
foldertune and keeps its traceback. In Python it is a `ValueError` (`foldertune.UserError`), and an unknown keyword
of an API function is an `UnknownKeyword`, also a `TypeError` as Python's own is. `named_keywords` gives a function
or method that sentence for keywords it does not take.
"""

import difflib
import functools
import inspect


class UserError(ValueError):
    """A problem with the user's input (a file, a folder or a flag) and how to fix it, in one sentence."""


class UnknownKeyword(UserError, TypeError):
    """An API function was given a keyword it does not take (the sentence suggests the closest one)."""


def named_keywords(function):
    """`function` (or method), whose unknown keywords raise an UnknownKeyword that suggests the closest one."""
    parameters = inspect.signature(function).parameters
    named = [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    named = [name for name in named if name != "self"]
    label = function.__qualname__ if "." in function.__qualname__ else f"ft.{function.__name__}"  # a method, or ft.*

    @functools.wraps(function)
    def call(*args, **given):
        for key in given:
            if key not in named:
                raise unknown_keyword(label, key, named)
        return function(*args, **given)

    return call


def unknown_keyword(label: str, key: str, named: list[str], others: list[str] = ()) -> UnknownKeyword:
    """The error for `key=` given to `label` (such as 'ft.load'), which takes `named` (and `others`, only suggested)."""
    close = difflib.get_close_matches(key, [*named, *others], n=1)
    hint = f"did you mean {close[0]}=?" if close else f"it takes {', '.join(named)}."
    return UnknownKeyword(f"{label}() has no keyword {key}=; {hint}")
