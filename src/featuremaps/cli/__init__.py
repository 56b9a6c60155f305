"""Command line: ``featuremaps show|layers|cam|report|compare|compare-classes|atlas|explore|train|evaluate``.

One module per command (``show.py``, ``cam.py``, ...: each parses nothing, calls the library, prints), the
options of all of them (``options.py``) and the progress bar (``progress.py``). Nothing outside this package
imports it. A user mistake (:class:`~featuremaps.errors.UserError`, bad option values) ends in one line on
stderr and exit code 2, never a traceback; Ctrl-C ends with 130.

This is the package's one laziness boundary besides ``featuremaps/__init__``: a command's module (and with
it Keras) is imported only once the arguments parsed, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

from featuremaps.cli.options import build_parser
from featuremaps.errors import UserError


def _quiet_frameworks() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="featuremaps: %(message)s")
    warnings.filterwarnings("ignore", module="keras")
    logging.getLogger("absl").setLevel(logging.ERROR)
    # TensorFlow's C++ start-up lines ("oneDNN custom operations are on", absl notices) ignore
    # TF_CPP_MIN_LOG_LEVEL: import Keras once with the stderr file descriptor pointed at /dev/null.
    if "keras" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import keras  # noqa: F401
        except Exception:  # a broken install: let the real import below raise with its message
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        _quiet_frameworks()
        module, _, func = args.run.partition(":")
        command = getattr(importlib.import_module(f"featuremaps.cli.{module}"), func or "run")
        return int(command(args) or 0)
    except UserError as e:
        print(f"featuremaps: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("featuremaps: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
