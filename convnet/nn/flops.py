"""How much arithmetic training a spec needs: the floating-point operations of its products.

:func:`training_flops` counts, from a spec, the floating-point operations of
the matrix products of one image's forward and backward pass. The layout of
a run reads it (threads pay for shards with long products only), and the
benchmarks set it against seconds and against the machine's product rate.
"""
from typing import NamedTuple

from convnet.nn.specs import normalise_spec


class LayerFlops(NamedTuple):
    """The products of one spec entry, in floating-point operations per image.

    ``forward`` is the layer's product (two operations per multiply-add);
    ``kernel_gradient`` and ``input_gradient`` those of its backward pass
    (the input gradient is 0 where no earlier layer needs it).
    """

    name: str
    forward: int
    kernel_gradient: int
    input_gradient: int

    @property
    def total(self):
        """Forward and backward together."""
        return self.forward + self.kernel_gradient + self.input_gradient


def layer_flops(spec):
    """Count the matrix products of every entry of a spec, per image.

    Parameters
    ----------
    spec : list or dict
        A spec (see ``convnet.nn.sequential``), normalised here.

    Returns
    -------
    list of LayerFlops
        One per Conv2D and Dense entry, in order. A convolution of a
        ``kh x kw x c_in`` window into ``c_out`` maps of ``h x w`` outputs
        does ``2 kh kw c_in c_out h w`` operations forward, and as many for
        the kernel's gradient and for the input's; a Dense layer of ``n_in``
        inputs and ``n_out`` units ``2 n_in n_out`` each. The first layer
        with weights computes no input gradient (nothing before it learns),
        as every engine here skips it. Biases, activations, pooling, the loss
        and the optimizer are element-wise work, left out.
    """
    spec = normalise_spec(spec)
    counts, learning_before = [], False
    # shapes[k] is the output of entry k, the input of entry k + 1.
    for entry, (before, after) in zip(spec["layers"][1:], zip(spec.shapes, spec.shapes[1:])):
        kind = entry["layer"]
        if kind == "Conv2D":
            (kh, kw), (h, w, c_out) = entry["kernel"], after
            product = 2 * kh * kw * before[2] * c_out * h * w
        elif kind == "Dense":
            product = 2 * before[0] * after[0]
        else:
            learning_before = learning_before or kind == "BatchNormalization"
            continue
        counts.append(LayerFlops(entry["name"], product, product,
                                 product if learning_before else 0))
        learning_before = True
    return counts


def training_flops(spec, images=1):
    """Floating-point operations of the products of training on ``images`` images.

    Parameters
    ----------
    spec : list or dict
        A spec.
    images : int
        How many images (an epoch's, say).

    Returns
    -------
    int
        ``images`` times the sum of :func:`layer_flops`' totals.
    """
    return images * sum(layer.total for layer in layer_flops(spec))
