"""The ``paddle-rep`` command line (also ``python -m paddle_rep``).

Subcommands live in :data:`COMMANDS` (name -> :class:`Command`); add one with :func:`register_command`.
Exit codes: 0 success, 1 other paddle-rep error, 2 bad usage or arguments, 3 unreadable, unsafe or
corrupt checkpoint, 4 checkpoint does not fit the architecture, 5 verification above tolerance,
6 a needed optional package (torch, safetensors, paddle2onnx, scikit-learn) is missing.
"""

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ArchMismatchError, CheckpointError, ReparamError, VerificationError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_ARCH, EXIT_VERIFY, EXIT_MISSING_DEPENDENCY = range(7)


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register_command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace], int]) -> None:
    """Add a subcommand; ``run(args)`` returns the exit code and may raise paddle-rep errors."""
    COMMANDS[name] = Command(help, add_arguments, run)


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint to read: .pth/.pt/.tar (torch), .pdparams (Paddle), .safetensors")
    parser.add_argument("dst", help="file to write: .pdparams, or .pth/.pt with --to torch, or .safetensors; "
                                    "a JSON sidecar DST.json is written next to it")
    parser.add_argument("--arch", help="model name (see paddle_rep.list_models()); enables the strict check")
    parser.add_argument("--deploy", action="store_true", help="write the re-parameterized (fused) model; needs --arch")
    parser.add_argument("--verify", action="store_true",
                        help="compare Paddle and torch reference outputs on a seeded input; needs --arch and torch")
    parser.add_argument("--to", choices=("paddle", "torch"), default="paddle", help="target framework (default paddle)")
    parser.add_argument("--dtype", choices=("float32", "float64", "float16", "keep"), default="float32",
                        help="floating dtype of the written tensors (default float32)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra model constructor argument, e.g. kernel_num=4 (repeatable)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="--verify input height and width (default 224, 32 for CIFAR models)")


def _convert_run(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint
    from .convert.arch import parse_model_args

    report = convert_checkpoint(args.src, args.dst, arch=args.arch, deploy=args.deploy, verify=args.verify,
                                to=args.to, dtype=args.dtype, model_args=parse_model_args(args.model_arg),
                                input_size=args.input_size, progress=False if args.quiet else None)
    for result in report.verify:
        _say(args, f"verify {result['what']}: max abs diff {result['max_abs']:.3e}, max rel diff "
                   f"{result['rel']:.3e} (allowed {result['allowed']:.0e}) -> ok")
    _say(args, f"wrote {report.dst} ({report.tensors} tensors, {report.to}, {report.dtype}, layout {report.layout}"
               f"{', arch ' + report.arch if report.arch else ''}{', deployed' if report.deploy else ''}) "
               f"in {report.seconds:.1f}s; sidecar {report.sidecar}")
    return EXIT_OK


register_command("convert", "convert a checkpoint between torch/timm/mmpretrain and Paddle layouts",
                 _convert_arguments, _convert_run)


def _lazy(module: str, function: str) -> Callable:
    """A subcommand part imported on use, so ``paddle-rep convert`` never pays for Paddle's import."""
    def call(arg):
        import importlib

        return getattr(importlib.import_module(f"paddle_rep.{module}"), function)(arg)
    return call


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'repvgg_b*'")


def _list_run(args: argparse.Namespace) -> int:
    from .models import list_models

    for name in list_models(args.pattern):
        print(name)
    return EXIT_OK


register_command("list", "list the registered models", _list_arguments, _list_run)
register_command("export", "re-parameterize a model and save a Paddle inference model (and ONNX)",
                 _lazy("exporter", "add_arguments"), _lazy("exporter", "run_cli"))
register_command("train", "train a registry model on the shipped digits with Paddle (one process; "
                 "tools/train.py under paddle.distributed.launch for several)",
                 _lazy("train", "add_arguments"), _lazy("train", "run"))
register_command("demo", "the whole story on real data: torch training, convert --verify, Paddle training, "
                 "fuse, export, inference", _lazy("demo", "add_arguments"), _lazy("demo", "run"))


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-rep", description=__doc__.splitlines()[0])
    verbosity = argparse.ArgumentParser(add_help=False)
    group = verbosity.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print errors only, no progress bar")
    group.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help, parents=[verbosity]))
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Importing paddle sets the root logger to INFO with its own handler, so filter at our loggers.
    for name in ("paddle_rep", "torch_ref"):
        logging.getLogger(name).setLevel(level)


# First match wins: the specific checkpoint errors before their ReparamError / ValueError bases.
_EXIT_CODES: tuple[tuple[type, int], ...] = (
    (VerificationError, EXIT_VERIFY),
    (ArchMismatchError, EXIT_ARCH),
    (CheckpointError, EXIT_CHECKPOINT),
    (ValueError, EXIT_USAGE),  # ReparamErrors that are ValueErrors included
    (ReparamError, EXIT_ERROR),
    (ImportError, EXIT_MISSING_DEPENDENCY),
)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (see the module docstring)."""
    # Before build_parser(): some subcommands' argument modules import Paddle.
    warnings.filterwarnings("ignore", message="No ccache found")  # Paddle's import-time build-tool notice
    warnings.filterwarnings("ignore", message="When training, we now always track")  # Paddle BN, once per layer
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    _configure_logging(args)
    prog = f"paddle-rep {args.command}"
    try:
        return COMMANDS[args.command].run(args)
    except (ReparamError, ValueError, ImportError) as err:
        code = next(code for kind, code in _EXIT_CODES if isinstance(err, kind))
        prefix = "" if isinstance(err, VerificationError) else "error: "  # the report already says what failed
        print(f"{prog}: {prefix}{err}", file=sys.stderr)
        return code

if __name__ == "__main__":
    sys.exit(main())
