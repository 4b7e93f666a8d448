"""Errors the CLI turns into a one-line message and exit code 2 (kept free of heavy imports)."""


class OutputExistsError(RuntimeError):
    """The output folder holds a finished run, or an unfinished run of another config."""
