"""The text members a checkpoint records about its run, each checked as it is read.

``dataset`` (one of ``convnet.data.DATASETS``), ``class_names`` (printable,
none empty), ``rule`` (what ``convnet.training.steps.rule_of`` writes) and
``data_source`` (``DEFAULT_SOURCE`` or an absolute path): they are printed,
shown on the page and used to find data, so a tampered file is refused with
one line naming the member, never passed on.
"""
import os
import re

from convnet.data import DATASETS
from convnet.errors import BadCheckpointError
from convnet.training.npz_members import MAX_PATH

# The ``data_source`` of a run that read its dataset from the default place.
DEFAULT_SOURCE = "default"
# The rules ``convnet.training.steps.rule_of`` writes: how each batch was cut (and BLAS
# threads); counts of at most nine digits.
RULE = re.compile(r"whole batches|micro-batch [1-9]\d{0,8}|processes [1-9]\d{0,8}"
                  r"(?:, threads [1-9]\d{0,8})?")


def _text_member(path, arrays, member, accepted, expected):
    """The one-item text ``member`` of a checkpoint's ``arrays``, refused unless ``accepted(text)``.

    ``expected`` completes the refusal's line: what the member should have held.
    """
    text = str(arrays[member].item())
    if not accepted(text):
        raise BadCheckpointError(f"checkpoint {path}: member {member!r} is {text!r}, "
                                 f"expected {expected}")
    return text


def recorded_dataset(path, arrays):
    """The ``dataset`` member's name, refused unless it is one of ``DATASETS``."""
    return _text_member(path, arrays, "dataset", lambda name: name in DATASETS,
                        f"one of {', '.join(DATASETS)}")


def recorded_class_names(path, arrays):
    """The ``class_names`` member as a tuple, refused if a name is empty or not printable.

    Their count and type were checked against the spec with the member's
    header; the names are printed and shown, so none may hide a line break
    or a terminal's control sequence.
    """
    names = tuple(str(item) for item in arrays["class_names"])
    for name in names:
        if not name or not name.isprintable():
            raise BadCheckpointError(f"checkpoint {path}: member 'class_names' holds {name!r}, "
                                     "expected printable names, none of them empty")
    return names


def recorded_rule(path, arrays):
    """The ``rule`` member (None if absent), refused unless ``RULE`` describes it."""
    if "rule" not in arrays:
        return None
    return _text_member(path, arrays, "rule", RULE.fullmatch,
                        "'micro-batch M', 'processes N' (', threads T') or 'whole batches'")


def recorded_source(path, arrays):
    """The ``data_source`` member (None if absent): ``DEFAULT_SOURCE`` or an absolute path."""
    if "data_source" not in arrays:
        return None
    return _text_member(
        path, arrays, "data_source",
        lambda source: source == DEFAULT_SOURCE or (source.isprintable() and os.path.isabs(source)),
        f"{DEFAULT_SOURCE!r} or an absolute path")


def source_text(data_path):
    """What ``data_source`` records for a run that read ``data_path`` (None: the default place).

    Returns
    -------
    str or None
        ``DEFAULT_SOURCE``, or the absolute path of ``data_path``; None when
        that path cannot be recorded (longer than ``MAX_PATH`` or not printable).
    """
    if data_path is None:
        return DEFAULT_SOURCE
    text = os.path.abspath(os.path.expanduser(os.fspath(data_path)))
    return text if len(text) <= MAX_PATH and text.isprintable() else None
