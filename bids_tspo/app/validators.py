"""Parser-bound validators shared by the command lines (``bids_tspo``, ``-phantom``, ``-demo``).

Each validator turns one argument's text into its value or raises
:class:`argparse.ArgumentTypeError`, which :class:`Parser` reports as a usage error (exit 64).

>>> positive_int("3"), label("sub-")("sub-01")
(3, '01')
>>> minutes("-5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: minutes after injection cannot be negative, got -5
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from pathlib import Path

from ..errors import EXIT_USAGE, UsageError


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit 64 (EX_USAGE) instead of 2, in one line (with a
    close match for a mistyped choice) and a pointer to ``--help``, not the whole usage block.

    >>> Parser(prog="x").error_line("argument level: invalid choice: 'partcipant' (choose from "
    ...                             "'participant', 'group')")
    "x: error: argument level: invalid choice: 'partcipant' (choose from 'participant', \
'group'); did you mean 'participant'? (x --help lists every option)"
    """

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, self.error_line(message) + "\n")

    def error_line(self, message: str) -> str:
        hint = ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{self.prog}: error: {message}{hint} ({self.prog} --help lists every option)"


def bounded(cast, minimum: float, strict: bool, kind: str, problem: str):
    """Parser-bound validator: ``cast`` the text, require ``>= minimum`` (``>`` if strict)."""

    def validate(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    return validate


positive_int = bounded(int, 1, False, "a whole number", "must be at least 1")
nonnegative_int = bounded(int, 0, False, "a whole number", "cannot be negative")
positive_float = bounded(float, 0, True, "a number", "must be a positive number")
nonnegative_float = bounded(float, 0, False, "a number", "cannot be negative")
minutes = bounded(float, 0, False, "minutes as a number",
                    "minutes after injection cannot be negative")


def image_size(text: str) -> int:
    value = positive_int(text)
    if value % 8 or value < 16:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of 8 and at least 16 (the U-Net halves it 3 times), got {value}"
        )
    return value


def label(prefix: str):
    """Validator for BIDS labels given with or without their ``sub-``/``ses-`` prefix."""

    def validate(text: str) -> str:
        label = text.strip()
        if label.startswith(prefix):
            label = label[len(prefix):]
        if not label or not label.isalnum():
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a valid BIDS label (letters and digits only, optional {prefix!r})"
            )
        return label

    return validate


def expand_label_files(values: list[str], prefix: str) -> tuple[str, ...]:
    """Accept labels, or files with one label per line (blank lines and # comments ignored)."""
    validate = label(prefix)
    labels: list[str] = []
    for value in values:
        path = Path(value)
        if path.is_file():
            lines = path.read_text().splitlines()
            entries = [ln.split("#")[0].strip() for ln in lines]
            try:
                labels += [validate(e) for e in entries if e]
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{path}: {exc}") from None
        else:
            try:
                labels.append(validate(value))
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"label {exc}") from None
    return tuple(dict.fromkeys(labels))  # unique, order kept
