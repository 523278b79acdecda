"""How large a model spec may be: the memory budget and the bounds on spec text and names.

A spec can come from anyone (a JSON file given to ``--model``, the spec
stored in a checkpoint), and its numbers decide how much memory building and
training the model takes. :mod:`convnet.nn.specs` checks every spec against
these bounds while it infers the layers' shapes, before anything of the
spec's size is allocated.

**Memory budget.** A model may need at most ``memory_budget()`` bytes:
``DEFAULT_MEMORY_BUDGET`` (4 GiB), or the size the environment variable
``CONVNET_MEMORY_BUDGET`` gives (``8GiB``, ``512MiB``, ``2G``, a number of
bytes). What a model needs is estimated from its spec alone:

- its weights: every parameter, trained or kept, times the dtype's size;
- its activations for a batch: every array a layer keeps from the forward
  pass for the backward one (its output, and for a Conv2D or Dense entry
  with a hidden activation the activated output, for BatchNormalization the
  normalised input, for Dropout the mask), plus the gradient of that output
  during the backward pass, times the batch size and the dtype's size.

Where the batch size is not known (a summary, building a model) the
activations of one image are counted. The estimate leaves out the
optimiser's state and the engine's temporary buffers, which the engine
bounds by working in chunks. At batch 512 the zoo's largest model,
``happy-model``, needs about 2.1 GiB.

**Checkpoints.** A spec that trains must give a checkpoint that loads: its
JSON text (as ``Sequential.to_json`` writes it) is at most
``MAX_SPEC_BYTES``, it has at most ``MAX_PARAMETERS`` weights and
``MAX_CLASSES`` classes, and layer names, which become member names such as
``conv1/kernel`` in the checkpoint's archive (and TensorFlow op names in the
twins), are 1 to 64 characters from ``[A-Za-z0-9_.-]``, starting with a
letter or digit.

**Spec text.** A spec file is at most ``MAX_SPEC_BYTES`` long and nests
brackets at most ``MAX_JSON_DEPTH`` deep (a spec needs 5), so that a crafted
file is refused before the JSON parser runs out of memory or of stack.
"""
import json
import math
import os
import re
import reprlib
from typing import NamedTuple

from convnet.errors import BadOptionError

MEMORY_BUDGET_VARIABLE = "CONVNET_MEMORY_BUDGET"
DEFAULT_MEMORY_BUDGET = 4 * 2 ** 30
# The zoo's specs take about 2 kB of JSON; a checkpoint stores at most this much.
MAX_SPEC_BYTES = 1 << 16
MAX_JSON_DEPTH = 32
# A float32 model of 400 MB: what a checkpoint may hold.
MAX_PARAMETERS = 100_000_000
MAX_CLASSES = 100_000
# Valid as a checkpoint member's first part, a file name, and a TensorFlow op or Keras name.
LAYER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LAYER_NAME_RULE = ("1 to 64 characters from A-Z a-z 0-9 _ . - starting with a letter or digit "
                   "(it names checkpoint members such as 'conv1/kernel')")
MAX_MODEL_NAME = 128

# Values quoted in messages are cut short: a spec's values may be of any size.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kib": 2 ** 10, "kb": 10 ** 3, "m": 2 ** 20,
          "mib": 2 ** 20, "mb": 10 ** 6, "g": 2 ** 30, "gib": 2 ** 30, "gb": 10 ** 9,
          "t": 2 ** 40, "tib": 2 ** 40, "tb": 10 ** 12}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")
# A JSON string (skipped: brackets inside it do not nest) or one bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def parse_size(text):
    """Return the number of bytes a size such as ``8GiB``, ``512MiB``, ``2G`` or ``1000000`` gives.

    Parameters
    ----------
    text : str
        A positive number, optionally followed by a unit: ``KiB``, ``MiB``,
        ``GiB``, ``TiB`` (or ``K``, ``M``, ``G``, ``T``) count in powers of
        1024, ``kB``, ``MB``, ``GB``, ``TB`` in powers of 1000; any case.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For anything else, or a size of zero bytes.
    """
    match = _SIZE.fullmatch(str(text))
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size such as 8GiB or 512MiB")
    count = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if count < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return count


def memory_budget():
    """Return the most bytes a model may need: ``CONVNET_MEMORY_BUDGET`` if set, else 4 GiB.

    Raises
    ------
    BadOptionError
        Naming the variable, when its value is not a size.
    """
    text = os.environ.get(MEMORY_BUDGET_VARIABLE)
    if text is None or not text.strip():
        return DEFAULT_MEMORY_BUDGET
    try:
        return parse_size(text)
    except ValueError:
        raise BadOptionError(f"{MEMORY_BUDGET_VARIABLE} must be a size such as 8GiB or 512MiB, "
                             f"received {shown(text)}") from None


def size_text(count):
    """Return a number of bytes for a message: ``74.5 GiB``, ``4.01 GiB``, ``312 KiB``, ``96 B``."""
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if count >= scale:
            value = count / scale
            # Three significant digits; 1000 to 1023 of a unit in full rather than as 1e+03.
            return (f"{value:.3g}" if value < 1000 else f"{value:.0f}") + f" {unit}"
    return f"{count} B"


def json_depth(text):
    """Return how deep the brackets of JSON ``text`` nest (0 for a bare number or string).

    Brackets inside strings do not count. The scan takes time in proportion
    to the text and no stack, so it can run before a parser that recurses.
    """
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest


def spec_text_problem(text):
    """Say what bound the JSON text of a spec exceeds, or return None when it is within them.

    Parameters
    ----------
    text : str

    Returns
    -------
    str or None
        E.g. ``"is 70,000 bytes long; a spec may take at most 65,536"``, to
        follow the name of what holds the text.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        return f"is {size:,} bytes long; a spec may take at most {MAX_SPEC_BYTES:,}"
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        return (f"nests brackets {depth:,} deep; a spec needs 5 levels and may take at most "
                f"{MAX_JSON_DEPTH}")
    return None


def parse_spec_text(text, holder, error=ValueError):
    """The JSON value of a spec's text, parsed only once it is within the bounds.

    Parameters
    ----------
    text : str
    holder : str
        What holds the text, to begin the messages: ``"spec file x.json"``.
    error : type
        The exception to raise.

    Raises
    ------
    error
        ``"<holder> is 70,000 bytes long; ..."``, ``"<holder> is not valid JSON (...)"``.
    """
    problem = spec_text_problem(text)
    if problem is not None:
        raise error(f"{holder} {problem}")
    try:
        return json.loads(text)
    except ValueError as exc:   # also an integer of more digits than Python converts
        raise error(f"{holder} is not valid JSON ({exc})") from None


def shown(value):
    """Return ``repr(value)`` for a message, shortened when long (``'aaa...aaa'``, ``[1, ...]``)."""
    return _REPR.repr(value)


def elements(shape):
    """Return the number of elements of ``shape`` exactly, however large (no int64 overflow)."""
    return math.prod(int(size) for size in shape)


class MemoryNeed(NamedTuple):
    """What a model needs by the estimate above, in bytes.

    ``weights``: every parameter; ``activations``: what the forward pass
    keeps for the backward one, and the gradients of the outputs, for the
    batch checked; ``budget``: :func:`memory_budget` when checked.
    """
    weights: int
    activations: int
    budget: int


def tally_memory(rows, batch_size, itemsize):
    """Add up what a model's layers need; find the first at which it outgrows its bounds.

    Parameters
    ----------
    rows : sequence of (int, int)
        For each layer in order, the Input first: its parameters, and the
        elements it keeps for one image (kept arrays and output gradient).
    batch_size : int
        Images per pass.
    itemsize : int
        Bytes of one number.

    Returns
    -------
    need : MemoryNeed
        The whole model's; up to the layer at fault if there is one.
    fault : tuple of (int, str), or None
        The index of the first layer at which the weights and activations
        exceed the budget, and what it needs: ``"needs 74.5 GiB of weights
        (20,000,000,000 parameters); the budget is 4 GiB (CONVNET_MEMORY_BUDGET
        raises it)"``.
    """
    budget = memory_budget()
    images = "one image" if batch_size == 1 else f"a batch of {batch_size:,}"
    parameters = activations = 0
    for index, (own_parameters, own_elements) in enumerate(rows):
        own_weights = own_parameters * itemsize
        own_activations = own_elements * batch_size * itemsize
        parameters += own_parameters
        activations += own_activations
        need = MemoryNeed(parameters * itemsize, activations, budget)
        if need.weights + activations > budget:
            if own_weights > budget:
                what = f"needs {size_text(own_weights)} of weights ({own_parameters:,} parameters)"
            elif own_activations > budget:
                what = f"needs {size_text(own_activations)} of activations for {images}"
            else:
                what = (f"brings the model to {size_text(need.weights + activations)} "
                        f"({size_text(need.weights)} of weights, {size_text(activations)} of "
                        f"activations for {images})")
            problem = (f"{what}; the budget is {size_text(budget)} "
                       f"({MEMORY_BUDGET_VARIABLE} raises it)")
            return need, (index, problem)
    return MemoryNeed(parameters * itemsize, activations, budget), None
