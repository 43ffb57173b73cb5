"""What every tool shares at its edges: one way to end with an error, and the parsing of an
option that several tools take (``--classes``).

:func:`run_tool` runs a tool's ``main``: an error ends the process with ``error: MESSAGE`` on
stderr and exit status 1 (SIGTERM / SIGINT during training: 128 + the signal, as a shell
reports it), without Python's traceback. ``--debug`` (anywhere on the command line, or
``DENSECLIP_DEBUG=1``) shows the traceback instead. An error raised outside this project's code
(a library's words) is named with where it came from, so that it can be reported.
"""
import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from denseclip.clip import check_class_names

from .hooks import TrainingInterrupted

#: The folders whose code words its errors for users.
OWN_CODE = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))), 'tools'))


def debugging() -> bool:
    """Whether the user asked for tracebacks (``--debug`` or ``DENSECLIP_DEBUG=1``)."""
    return '--debug' in sys.argv or os.environ.get('DENSECLIP_DEBUG', '') not in ('', '0')


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]  # str(KeyError) would quote the message
    return str(err) or type(err).__name__


def _raised_in_own_code(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(OWN_CODE)


def run_tool(main: Callable[[], Any]) -> None:
    """Runs ``main`` and ends the process as described in the module docstring (with ``main``'s
    status when it returns an integer)."""
    debug = debugging()
    if '--debug' in sys.argv:
        sys.argv.remove('--debug')  # the tools' parsers do not know it
    try:
        status = main()
    except TrainingInterrupted as err:
        print(f'stopped: {err}', file=sys.stderr)
        sys.exit(128 + err.signum)
    except KeyboardInterrupt:
        if debug:
            raise
        print('stopped: interrupted (Ctrl-C)', file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001  (every error ends in one message)
        if debug:
            raise
        print(f'error: {_message(err)}', file=sys.stderr)
        if not _raised_in_own_code(err):
            frame = traceback.extract_tb(err.__traceback__)[-1]
            print(f'(a {type(err).__name__} raised in {frame.filename}, line {frame.lineno}; '
                  'rerun with --debug for the whole traceback)', file=sys.stderr)
        sys.exit(1)
    if isinstance(status, int):  # the tools that count bad inputs return 1
        sys.exit(status)


def class_list(text: str) -> list[str]:
    """``--classes "a,b,c"``: the comma-separated names, checked like every list of class
    names (:func:`~denseclip.clip.check_class_names`)."""
    names = [name.strip() for name in text.split(',') if name.strip()]
    try:
        return check_class_names(names, '--classes')
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
