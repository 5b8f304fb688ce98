"""The one exception type the CLI turns into a one-line message and exit code 2."""


class RegmixError(Exception):
    """Bad input: the message names the file, row or field at fault and fits on one line."""
