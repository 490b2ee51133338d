"""The one exception type for bad user input: the CLI prints it as a single line, no traceback."""


class DataError(ValueError):
    """Input data (a folder, CSV row, image or checkpoint) is unusable; the message names it."""
