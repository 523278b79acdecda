"""Argument types and options shared by the sub-commands of ``convnet``."""
import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from convnet.training.config import DATASETS, OPTIMIZERS, SEED_LIMIT

DEFAULT_CHECKPOINT = "runs/lenet5-numpy/checkpoint.npz"
__all__ = ["DATASETS", "DEFAULT_CHECKPOINT", "OPTIMIZERS", "SEED_LIMIT", "Command",
           "add_dataset_options", "flag", "non_negative_int", "note", "positive_float",
           "positive_int", "say", "seed_int", "unit_float"]


@dataclass(frozen=True)
class Command:
    """A sub-command of ``convnet``, declared by the module that does its work.

    ``name`` is the word typed after ``convnet``. ``configure(parser)`` adds
    the sub-command's arguments to its ``argparse.ArgumentParser``;
    ``run(args)`` does the work with the parsed ``argparse.Namespace`` and
    returns the exit status (None for 0). ``help`` is the one line that
    ``convnet --help`` shows beside the name.
    """

    name: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    help: str

    @property
    def description(self):
        """``help`` as a sentence: ``convnet NAME --help``'s text unless ``configure`` sets one."""
        return self.help[0].upper() + self.help[1:] + "."


def flag(field):
    """The option of the command line for a library field: ``batch_size`` -> ``--batch-size``."""
    return "--" + field.replace("_", "-")


def say(line):
    """Print one line of the command's output at once (before a slow step starts)."""
    print(line, flush=True)


def note(line):
    """Print a note that is not the command's output (a skipped step, say) on stderr."""
    print(line, file=sys.stderr, flush=True)


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, received {value}")
    return value


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, received {value}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0."""
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, received {text}")
    return value


def seed_int(text):
    """argparse type: an integer from 0 to 2**32 - 1 (every generator accepts those seeds)."""
    value = _int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_LIMIT - 1}, "
                                         f"received {value}")
    return value


def unit_float(text):
    """argparse type: a float in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), received {text}")
    return value


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, received {text!r}") from None


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, received {text!r}") from None


def add_dataset_options(parser, default="mnist"):
    """``--dataset`` (default ``default``; None: the checkpoint's own) and ``--data``."""
    parser.add_argument("--dataset", choices=DATASETS, default=default,
                        help="which dataset to use (default: "
                             + ("mnist" if default else "the checkpoint's own") + ")")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="read the dataset from PATH instead: MNIST.npz, a Keras-style "
                             "mnist.npz, a folder of IDX .gz files, or a cached NAME.npz")
