"""The ``oblivio`` command's root and its error contract: bad input ends with one line on stderr
(``error: ...``) and exit status 2. The verb groups register on ``app`` from their modules."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from oblivio.errors import OblivioError


class OneLineGroup(TyperGroup):
    """Usage errors (a missing option, a value out of range) end as every other refusal does:
    one ``error:`` line and exit status 2, not a boxed page of help."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except TyperException as exc:  # typer's own click: a usage error
            print(f"error: {exc.format_message()}", file=sys.stderr)
            result = getattr(exc, "exit_code", 2)
            if not standalone_mode:
                raise
        except typer.Abort:
            print("error: interrupted", file=sys.stderr)
            result = 130
            if not standalone_mode:
                raise
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


app = typer.Typer(help="Make image classifiers forget data without retraining from scratch.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineGroup)


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn bad input into one clear line on stderr and exit status 2: the library's own
    errors, and the file, network and MLflow errors it did not word itself (their first line).
    Anything else is a bug, and keeps its traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():  # a number option's NaN or infinity, at parse time
            if isinstance(value, float) and not math.isfinite(value):
                print(f"error: --{name.replace('_', '-')} must be a finite number, got {value}",
                      file=sys.stderr)
                raise typer.Exit(2)
        try:
            return fn(*args, **kwargs)
        except OblivioError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except Exception as exc:
            if not (isinstance(exc, OSError) or type(exc).__module__.startswith("mlflow.")):
                raise
            text = str(exc).strip()
            print(f"error: {text.splitlines()[0] if text else type(exc).__name__}",
                  file=sys.stderr)
        raise typer.Exit(2)
    return wrapper
