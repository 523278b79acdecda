"""A model's summary: its layers and parameter counts, and the Keras-style table of them.

:class:`Summary` holds what Keras's ``model.summary()`` reports, one
:class:`SummaryRow` per layer; :func:`summary_text` writes it as Keras's
table. Summaries are made from a spec (:func:`convnet.nn.specs.spec_summary`,
``Sequential.summary``) or, for AlexNet, which no spec can express, by
``convnet.nn.architectures``: one formatter prints them all.
"""
from typing import NamedTuple


class SummaryRow(NamedTuple):
    """One layer of a summary.

    ``name``, ``kind`` (Keras's class name), ``output_shape`` (no batch
    axis) and ``params`` (trained and kept weights) are what Keras's
    ``summary()`` shows; ``formula`` (how ``params`` is obtained, e.g.
    ``(5*5*1+1)*6``, empty when 0) and ``description`` (the hyper-parameters)
    are shown by ``summary_text(..., details=True)``.
    """
    name: str
    kind: str
    output_shape: tuple
    params: int
    formula: str = ""
    description: str = ""


class Summary(NamedTuple):
    """A model's layers and parameter totals, as Keras's ``summary()`` reports them.

    ``input_shape`` is one example's (h, w, c), shown as a first row by
    ``summary_text(..., details=True)``; ``rows`` has one row per layer
    after the input.
    """
    name: str
    rows: list
    total: int
    trainable: int
    non_trainable: int
    input_shape: tuple = None


def summary_text(summary, details=False):
    """Return ``summary`` as a Keras-style text table.

    Parameters
    ----------
    summary : Summary
    details : bool
        Add the input as a first row and a last column saying how each
        count is obtained and the layer's hyper-parameters.

    Returns
    -------
    str
        One row per layer (name and Keras class, output shape with ``None``
        as the batch axis, parameter count), then the trainable and
        non-trainable counts, and last the line ``Total params: 220,234``
        (thousands separated).
    """
    def shape_text(shape):
        return "(None, " + ", ".join(str(size) for size in shape) + ")"

    named = [(f"{row.name} ({row.kind})", row) for row in summary.rows]
    if details and summary.input_shape is not None:
        named.insert(0, ("input (InputLayer)",
                         SummaryRow("input", "InputLayer", summary.input_shape, 0)))
    widths = (max([32] + [len(name) + 2 for name, _ in named]), 24, 12)
    header = ("Layer (type)".ljust(widths[0]) + "Output Shape".ljust(widths[1])
              + "Param #".rjust(widths[2]))
    rows = []
    for name, row in named:
        line = (name.ljust(widths[0]) + shape_text(row.output_shape).ljust(widths[1])
                + f"{row.params:,}".rjust(widths[2]))
        if details and (row.formula or row.description):
            line += "   " + ": ".join(part for part in (row.formula, row.description) if part)
        rows.append(line)
    if details:
        header += "   Computed as / hyper-parameters"
    rule_width = max([sum(widths)] + [len(line) for line in rows if details])
    return "\n".join([f'Model: "{summary.name}"', "_" * rule_width, header, "=" * rule_width,
                      *rows, "=" * rule_width,
                      f"Trainable params: {summary.trainable:,}",
                      f"Non-trainable params: {summary.non_trainable:,}",
                      f"Total params: {summary.total:,}"])
