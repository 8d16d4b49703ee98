"""One exception type for bad input, so the CLI can print one clear line and exit non-zero."""


class OblivioError(Exception):
    """Bad input or an unusable resource, described in one line a user can act on."""
