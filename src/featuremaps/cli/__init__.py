"""Command line: ``featuremaps show|layers|cam|report|compare|compare-classes|atlas|patterns|explore|train|evaluate``.

One module per command (``show.py``, ``cam.py``, ...: each parses nothing, calls the library, prints), the
options of all of them (``options.py``) and the progress bar (``progress.py``). Nothing outside this package
imports it. A user mistake (:class:`~featuremaps.errors.UserError`, bad option values) ends in one line on
stderr and exit code 2, never a traceback; a batch that skipped some of its images exits with 1; Ctrl-C ends
with 130 and SIGTERM with 143, both removing unfinished files.

This is the package's one laziness boundary besides ``featuremaps/__init__``: a command's module (and with
it Keras) is imported only once the arguments parsed, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
import warnings

from featuremaps import keras_backend, registry
from featuremaps.cli.options import build_parser
from featuremaps.cli.progress import clean
from featuremaps.errors import UserError


def _quiet_frameworks() -> None:
    logging.basicConfig(level=logging.WARNING, format="featuremaps: %(message)s")
    warnings.filterwarnings("ignore", module="keras")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # "tf.function retracing" notices
    # numpy's "invalid value"/"divide by zero" RuntimeWarnings on odd inputs are handled where they matter
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    # torch on the Keras torch backend, at import: "TF32 acceleration on top of oneDNN is available for Intel GPUs"
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")


def _fresh() -> str:
    """A newline on a terminal, where a progress bar may hold the current line."""
    return "\n" if getattr(sys.stderr, "isatty", lambda: False)() else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every temporary file and folder is removed on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 done, 1 some items skipped, 2 nothing done (error), 130/143 interrupted."""
    # SIGTERM (kill, a job scheduler, docker stop) ends like Ctrl-C: temporary files removed, one line.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        _quiet_frameworks()
        keras_backend.choose()  # torch or JAX where TensorFlow is not installed, before Keras is imported
        module, _, func = args.run.partition(":")
        command = getattr(importlib.import_module(f"featuremaps.cli.{module}"), func or "run")
        return int(command(args) or 0)
    except UserError as e:  # one line: newlines and terminal escapes (from file names) made visible
        print(f"featuremaps: error: {clean(e)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra the command needs is not installed: say which
        extra = registry.extras().get((e.name or "").split(".")[0])
        if extra is None:
            raise
        command = getattr(args, "command", "this command")
        print(
            f"featuremaps: error: {command} needs {e.name.split('.')[0]}, which is not installed; "
            f"pip install 'featuremaps[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except Terminated:
        print(f"{_fresh()}featuremaps: terminated (SIGTERM); unfinished files removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{_fresh()}featuremaps: interrupted; unfinished files removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
