"""The ``paddle-rep`` command line (also ``python -m paddle_rep.apps``).

Subcommands live in :data:`COMMANDS` (name -> :class:`Command`); add one with :func:`register_command`.
This module declares every subcommand's arguments itself and imports a subcommand's handler only when
that subcommand runs, so ``--help`` needs neither Paddle nor torch. Handlers are named ``run_cli(args)``
in their module (``paddle_rep.apps.exporter``, ``.train``, ``.qat_train``, ``.demo``); convert and list, thin
wrappers of library calls, have theirs here.
Exit codes: 0 success, 1 other paddle-rep error, 2 bad usage or arguments, 3 unreadable, unsafe or
corrupt checkpoint or training data, 4 checkpoint does not fit the architecture, 5 verification above tolerance,
6 a needed optional package (torch, safetensors, h5py, paddle2onnx, onnxruntime, openvino, scikit-learn)
is missing.
"""

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paddle_rep.core.errors import (
    ArchMismatchError,
    CheckpointError,
    DataError,
    MissingPackageError,
    PaddleRepError,
    VerificationError,
)

from .console import quiet_paddle_notices

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_ARCH, EXIT_VERIFY, EXIT_MISSING_DEPENDENCY = range(7)


@dataclass(frozen=True)
class Command:
    """A ``paddle-rep`` subcommand, as :func:`register_command` stores it.

    Attributes:
        help: One line for ``paddle-rep --help``.
        add_arguments: Adds the subcommand's arguments to its parser.
        run: Runs it on the parsed arguments and returns the exit code.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register_command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace], int]) -> None:
    """Add a subcommand to ``paddle-rep``.

    Args:
        name: The subcommand's name.
        help: One line for ``paddle-rep --help``.
        add_arguments: Adds the subcommand's arguments to its parser.
        run: Runs it: takes the parsed arguments, returns the exit code; paddle-rep errors it raises
            become their exit codes.
    """
    COMMANDS[name] = Command(help, add_arguments, run)


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint to read: .pth/.pt/.tar (torch), .pdparams (Paddle), .safetensors, "
                                    "ACNet .hdf5")
    parser.add_argument("dst", help="file to write: .pdparams, or .pth/.pt with --to torch, or .safetensors, or "
                                    ".hdf5 (ACNet layout); a JSON sidecar DST.json is written next to it")
    parser.add_argument("--arch", help="model name (see paddle_rep.list_models()); enables the strict check")
    parser.add_argument("--deploy", action="store_true", help="write the re-parameterized (fused) model; needs --arch")
    parser.add_argument("--verify", action="store_true",
                        help="compare Paddle and torch reference outputs on a seeded input; needs --arch and torch")
    parser.add_argument("--to", choices=("paddle", "torch", "hdf5"), default="paddle",
                        help="target framework (default paddle; hdf5: ACNet's layout, official names)")
    parser.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16", "keep"), default="float32",
                        help="floating dtype of the written tensors (default float32; bfloat16 not in HDF5)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra model constructor argument, e.g. kernel_num=4 (repeatable)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="--verify input height and width (default 224, 32 for CIFAR models)")
    parser.add_argument("--layout", default=None,
                        help="write another project's key names instead of the official ones "
                             "(paddleclas-resnet18-dbb: PaddleClas's ResNet18_dbb)")


def _convert_run_cli(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint
    from .convert.arch import parse_model_args

    report = convert_checkpoint(args.src, args.dst, arch=args.arch, deploy=args.deploy, verify=args.verify,
                                to=args.to, dtype=args.dtype, model_args=parse_model_args(args.model_arg),
                                input_size=args.input_size, progress=False if args.quiet else None,
                                layout=args.layout)
    for result in report.verify:
        _say(args, f"verify {result['what']}: max abs diff {result['max_abs']:.3e}, max rel diff "
                   f"{result['rel']:.3e} (allowed {result['allowed']:.0e}) -> ok")
    _say(args, f"wrote {report.dst} ({report.tensors} tensors, {report.to}, {report.dtype}, layout {report.layout}"
               f"{', arch ' + report.arch if report.arch else ''}{', deployed' if report.deploy else ''}) "
               f"in {report.seconds:.1f}s; sidecar {report.sidecar}")
    return EXIT_OK


register_command("convert", "convert a checkpoint between torch/timm/mmpretrain and Paddle layouts",
                 _convert_arguments, _convert_run_cli)


def _check_sidecar_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dst", help="a file written by paddle-rep convert; checked against DST.json's sha256")


def _check_sidecar_run_cli(args: argparse.Namespace) -> int:
    from .convert.write import check_sidecar

    sidecar = check_sidecar(args.dst)
    _say(args, f"{args.dst}: ok, sha256 {sidecar['output']['sha256']} matches its sidecar")
    return EXIT_OK


register_command("check-sidecar", "check a converted file against the sha256 in its JSON sidecar",
                 _check_sidecar_arguments, _check_sidecar_run_cli)


def _lazy(module: str, function: str = "run_cli") -> Callable:
    """A subcommand handler imported on use, so ``paddle-rep convert`` never pays for Paddle's import."""
    def call(arg):
        import importlib

        return getattr(importlib.import_module(f"paddle_rep.apps.{module}"), function)(arg)
    return call


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'repvgg_b*'")


def _list_run_cli(args: argparse.Namespace) -> int:
    from paddle_rep.models import list_models

    for name in list_models(args.pattern):
        print(name)
    return EXIT_OK


# paddle_rep.apps.predictor.BACKENDS, spelled here so that building the parser imports no Paddle; test_cli checks.
EXPORT_BACKENDS = ("paddle", "onnxruntime", "openvino")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``paddle-rep export`` (handled by :func:`paddle_rep.apps.exporter.run_cli`).

    Args:
        parser: The subcommand's parser, to which the arguments are added.
    """
    parser.add_argument("out", help="output prefix, e.g. exported/repvgg_a0")
    parser.add_argument("--arch", required=True, help="model name (see `paddle-rep list`)")
    parser.add_argument("--checkpoint", help="Paddle state dict (.pdparams) of the unfused model")
    parser.add_argument("--input-shape", default="3,224,224",
                        help="C,H,W of one sample; H or W may be '?' for a dynamic size (default 3,224,224)")
    parser.add_argument("--num-classes", type=int, help="passed to the model builder")
    parser.add_argument("--batch-size", type=int, help="fix the batch (default dynamic)")
    parser.add_argument("--onnx", action="store_true", help="also write OUT.onnx (needs paddle2onnx)")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")
    parser.add_argument("--backend", choices=EXPORT_BACKENDS,
                        help="check the exported model with this runtime on two seeded inputs against the "
                             "model itself (onnxruntime and openvino imply --onnx)")
    parser.add_argument("--fold-batch-sizes", default=None, metavar="N[,N...]",
                        help="batch sizes of ODConv's batch-fold ONNX graphs (default: --batch-size, or 1)")
    parser.add_argument("--threads", type=int, help="runtime threads for the --backend check")
    parser.add_argument("--precision", choices=("f32", "bf16", "int8"), default="f32",  # predictor.PRECISIONS
                        help="precision of the --backend check; bf16 (openvino only) is checked after an f32 "
                             "check of the same graph, against a bf16 bound; int8 quantizes with --calibration and "
                             "prints the int8 check on held-out samples (onnxruntime: with its per-layer table; "
                             "paddle: oneDNN int8, not for ODConv or SE models)")
    parser.add_argument("--calibration", metavar="PATH",
                        help="int8 calibration data: a folder of images (the model family's preprocessing) or a "
                             ".npy [N, C, H, W] float32 array already preprocessed")
    parser.add_argument("--calibration-size", type=int, metavar="N",
                        help="calibration samples to use (default: all); 1 in 8 is held out for the int8 check")


# The defaults of paddle_rep.apps.train.TrainConfig, spelled here so that building the parser imports no
# Paddle; test_cli checks that the two agree. Epochs, batch size, lr, ... default to the recipe's (None).
TRAIN_DEFAULTS = {"arch": "rep_tiny", "seed": 0, "workers": 0, "keep_last": 3, "save_every_steps": 0,
                  "ema_decay": 0.9999}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``paddle-rep train`` and ``tools/train.py``.

    :func:`paddle_rep.apps.train.run_cli` handles them.

    Args:
        parser: The subcommand's parser, to which the arguments are added.
    """
    defaults = TRAIN_DEFAULTS
    parser.add_argument("--arch", default=defaults["arch"], help="registry model (default rep_tiny)")
    parser.add_argument("--data", metavar="ROOT", help="train/ and val/ class folders, or train_list.txt and "
                                                       "val_list.txt (PaddleClas); default: the shipped digits")
    parser.add_argument("--out", required=True, type=Path, help="folder for checkpoints, metrics and the models")
    parser.add_argument("--recipe", help="training recipe preset (default: the architecture family's; digits "
                                         "without --data): repvgg, repvgg_paper, repvgg_custom_l2, repvggplus, "
                                         "odconv_resnet, odconv_mobilenetv2, acnet_imagenet, acnet_cifar, digits")
    parser.add_argument("--image-size", type=int, help="training and evaluation crop (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, help="global batch size, all ranks together (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="learning rate at the recipe's reference batch")
    parser.add_argument("--temp-epochs", type=int, help="ODConv temperature annealing epochs")
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                        help="set any recipe field, e.g. weight_decay=5e-5, lr_scaling=none (repeatable)")
    parser.add_argument("--workers", type=int, default=defaults["workers"], help="data loader worker processes")
    parser.add_argument("--num-classes", type=int, help="classes of the head (default: those found in the data)")
    parser.add_argument("--pretrained", metavar="CKPT", help="start from a checkpoint paddle-rep convert wrote; "
                                                            "a head of another size is re-initialised")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="CKPT",
                        help="continue from a training checkpoint (no value: the newest in --out)")
    parser.add_argument("--skip-bad-images", action="store_true", help="skip (and count) images that do not decode")
    parser.add_argument("--amp", choices=("fp16", "bf16"), help="mixed precision: fp16 with loss scaling (GPU), bf16")
    parser.add_argument("--ema", action="store_true", help="keep, evaluate and save an EMA of the weights")
    parser.add_argument("--ema-decay", type=float, default=defaults["ema_decay"])
    parser.add_argument("--sync-bn", action="store_true", help="convert BNs to SyncBatchNorm (GPU, or one process)")
    parser.add_argument("--use-checkpoint", action="store_true", help="gradient checkpointing (models that have it)")
    parser.add_argument("--attention-bn", choices=("batch", "running"),
                        help="ODConv attention BN: running statistics while training lets a batch of one train")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra model constructor argument, e.g. kernel_num=4 (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many optimizer steps in total")
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--save-every-steps", type=int, default=defaults["save_every_steps"],
                        help="also checkpoint every N steps (0: at the end of each epoch only)")
    parser.add_argument("--keep-last", type=int, default=defaults["keep_last"], help="step checkpoints kept")
    parser.add_argument("--no-export", action="store_true", help="skip the inference-model export at the end")
    parser.add_argument("--visualdl", action="store_true", help="log to OUT/visualdl (needs visualdl)")
    parser.add_argument("--save-every-rank", action="store_true", help="also write rank{N}.pdparams")


# The defaults of ``paddle-rep qat`` (paddle_rep.apps.qat_train), spelled here so that building the parser
# imports no Paddle; test_qat_cli checks lr against QATConfig. Without --steps the run takes QAT_DEFAULTS["epochs"]
# epochs (upstream README: 20); --batch-size and --image-size default to the family recipe's.
QAT_DEFAULTS = {"epochs": 20, "lr": 1e-3, "calibration_size": 256, "backend": "both", "workers": 0, "seed": 0}
QAT_BACKENDS = ("onnxruntime", "openvino", "both")


def add_qat_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``paddle-rep qat`` (handled by :func:`paddle_rep.apps.qat_train.run_cli`).

    Args:
        parser: The subcommand's parser, to which the arguments are added.
    """
    defaults = QAT_DEFAULTS
    parser.add_argument("--arch", required=True, help="a RepVGG, RepVGGplus or QARepVGG zoo model, or rep_tiny")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="trained weights, train or deploy form: a converted official checkpoint, or paddle-rep "
                             "train's model.pdparams / model_deploy.pdparams / a .pdtrain checkpoint")
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="train/ and val/ class folders, or train_list.txt and val_list.txt (as paddle-rep train)")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for the int8 export (OUT/model, with its manifest) and OUT/metrics.json")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help=f"QAT epochs over the training split (default {defaults['epochs']})")
    length.add_argument("--steps", type=int, help="QAT optimizer steps in total, instead of --epochs")
    parser.add_argument("--lr", type=float, default=defaults["lr"],
                        help=f"constant learning rate of SGD with momentum 0.9, weight decay 4e-5 (default "
                             f"{defaults['lr']:g})")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the family recipe's)")
    parser.add_argument("--image-size", type=int, help="training crop and evaluation size (default: the recipe's)")
    parser.add_argument("--freeze-steps", type=int, metavar="N",
                        help="the last N steps run with BN statistics and activation observers frozen (default: a "
                             "quarter of the steps)")
    parser.add_argument("--calibration-size", type=int, default=defaults["calibration_size"], metavar="N",
                        help="training images that calibrate the int8 activation ranges (default "
                             f"{defaults['calibration_size']})")
    parser.add_argument("--backend", choices=QAT_BACKENDS, default=defaults["backend"],
                        help="int8 runtime(s) to export for and evaluate (default both)")
    parser.add_argument("--workers", type=int, default=defaults["workers"], help="data loader worker processes")
    parser.add_argument("--seed", type=int, default=defaults["seed"])


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``paddle-rep demo`` (handled by :func:`paddle_rep.apps.demo.run_cli`).

    Args:
        parser: The subcommand's parser, to which the arguments are added.
    """
    parser.add_argument("--model", default="rep_tiny", help="registry model taking in_channels (default rep_tiny)")
    parser.add_argument("--epochs", type=int, default=4, help="torch training epochs (default 4)")
    parser.add_argument("--paddle-steps", type=int, default=10, help="steps trained on in both frameworks")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("paddle_rep_demo"), help="working folder")
    parser.add_argument("--surgery", choices=("acb", "repvgg", "none"), default="acb",
                        help="also put these blocks into a plain CNN with insert_blocks, train, fuse back")


register_command("list", "list the registered models", _list_arguments, _list_run_cli)
register_command("export", "re-parameterize a model and save a Paddle inference model (and ONNX)",
                 add_export_arguments, _lazy("exporter"))
register_command("train", "train a registry model with Paddle on your images or the shipped digits (one "
                 "process; tools/train.py under paddle.distributed.launch for several)", add_train_arguments,
                 _lazy("train"))
register_command("qat", "quantization-aware training of a RepVGG-family model on your images (Solution C), "
                 "exported as int8 for ONNX Runtime and OpenVINO", add_qat_arguments, _lazy("qat_train"))
register_command("demo", "the whole story on real data: torch training, convert --verify, Paddle training, "
                 "fuse, export, inference", add_demo_arguments, _lazy("demo"))


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Every other argument goes to the benchmark (python -m paddle_rep.apps.bench --help lists them)."


def _bench_run_cli(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    try:
        return bench_main(args.bench_args)
    except SystemExit as exc:  # the benchmark's own argparse and argument checks
        if isinstance(exc.code, int):
            return exc.code
        print(f"paddle-rep bench: error: {exc.code}", file=sys.stderr)
        return EXIT_USAGE


register_command("bench", "benchmark torch_ref, paddle_rep and every deploy backend side by side "
                 "(writes docs/performance/bench.{md,png,json})", _bench_arguments, _bench_run_cli)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``paddle-rep`` argument parser, one subparser per registered command.

    Returns:
        The parser; each subparser also takes ``-q``/``--quiet`` and ``-v``/``--verbose``.
    """
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


# First match wins: the specific checkpoint errors before their PaddleRepError / ValueError bases.
_EXIT_CODES: tuple[tuple[type, int], ...] = (
    (MissingPackageError, EXIT_MISSING_DEPENDENCY),  # also a PaddleRepError
    (VerificationError, EXIT_VERIFY),
    (ArchMismatchError, EXIT_ARCH),
    (CheckpointError, EXIT_CHECKPOINT),
    (DataError, EXIT_CHECKPOINT),
    (ValueError, EXIT_USAGE),  # PaddleRepErrors that are ValueErrors included
    (PaddleRepError, EXIT_ERROR),
    (ImportError, EXIT_MISSING_DEPENDENCY),
)
# The pip extra that brings a framework a subcommand imports on use.
_EXTRAS = {"paddle": "cpu", "torch": "torch"}


def _error_text(err: BaseException) -> str:
    if isinstance(err, ModuleNotFoundError) and err.name in _EXTRAS:
        return f"{err} (pip install 'paddle-rep[{_EXTRAS[err.name]}]')"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    """Run one ``paddle-rep`` subcommand.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 ok, 1 other paddle-rep error, 2 usage, 3 bad checkpoint, 4 architecture
        mismatch, 5 verification failed, 6 missing optional package.
    """
    # Before any handler runs: the handlers import Paddle.
    quiet_paddle_notices()
    prog = "paddle-rep"
    try:
        # Inside the try: a subcommand registered by a plugin may import a missing package here.
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra and args.command != "bench":  # only bench passes arguments on (to paddle_rep.apps.bench)
                parser.parse_args(argv)  # reports them as argparse always did
            args.bench_args = extra
        except SystemExit as exc:  # argparse exits on --help and on usage errors
            return int(exc.code or 0)
        _configure_logging(args)
        prog = f"paddle-rep {args.command}"
        return COMMANDS[args.command].run(args)
    except (PaddleRepError, ValueError, ImportError) as err:
        return _report(prog, err)


def _report(prog: str, err: BaseException) -> int:
    code = next(code for kind, code in _EXIT_CODES if isinstance(err, kind))
    prefix = "" if isinstance(err, VerificationError) else "error: "  # the report already says what failed
    print(f"{prog}: {prefix}{_error_text(err)}", file=sys.stderr)
    return code


def run_with_exit_codes(prog: str, run: Callable[[], int]) -> int:
    """Call ``run()``, with paddle-rep, usage and import errors printed and turned into this module's exit codes.

    Args:
        prog: The program name that prefixes an error message on standard error.
        run: The work; returns an exit code.

    Returns:
        ``run()``'s exit code, or the code of the error it raised (see :func:`main`).
    """
    try:
        return run()
    except (PaddleRepError, ValueError, ImportError) as err:
        return _report(prog, err)

if __name__ == "__main__":
    sys.exit(main())
