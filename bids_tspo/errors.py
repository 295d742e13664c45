"""Exception types that map one-to-one onto the documented exit codes.

Library code raises these; only :mod:`bids_tspo.app.cli` turns them into exit codes, so a user
error is always one clear line (the message names the file and what is wrong) and never a
traceback.

>>> from bids_tspo.errors import InputDataError
>>> InputDataError("sub-01_T1w.nii.gz: image contains NaN").exit_code
65
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_CANTCREAT = 73

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "unexpected failure (details in the log file)",
    EXIT_USAGE: "usage error (bad option or option combination)",
    EXIT_DATAERR: "bad input data (the message names the file and the problem)",
    EXIT_NOINPUT: "missing input (no T1w, unknown participant or session, empty selection)",
    EXIT_CANTCREAT: "cannot create output (output or work directory not writable)",
}


def describe(exc: BaseException, limit: int = 200) -> str:
    r"""An exception as one line, ``Type: first line of its message`` (the message cut at
    ``limit`` characters; just ``Type`` when it has none).

    >>> describe(ValueError("bad header\nmore detail"))
    'ValueError: bad header'
    >>> describe(EOFError())
    'EOFError'
    """
    lines = str(exc).splitlines()
    return type(exc).__name__ + (f": {lines[0][:limit]}" if lines else "")


class BidsTspoError(Exception):
    """Base class of expected, user-facing errors."""

    exit_code = EXIT_FAILURE


class UsageError(BidsTspoError):
    exit_code = EXIT_USAGE


class InputDataError(BidsTspoError):
    exit_code = EXIT_DATAERR


class MissingInputError(BidsTspoError):
    exit_code = EXIT_NOINPUT


class OutputError(BidsTspoError):
    exit_code = EXIT_CANTCREAT
