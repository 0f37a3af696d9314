"""The one exception type for mistakes a user can fix (bad ids, options, files)."""


class UserError(Exception):
    """A user-fixable error. The CLI prints ``error: <message>`` on one line and exits with 2.

    The message should say what was wrong and what to do about it.
    """
