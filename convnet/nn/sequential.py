"""A chain of layers built from a declarative spec: any small CNN in NumPy.

The spec format, its checks, shape inference and the summary table are in
:mod:`convnet.nn.specs` (re-exported here: ``normalise_spec``,
``spec_weights``, ``summary_text``, ``KERAS_CLASSES``); the layers follow
:class:`convnet.nn.layer.Layer`. Besides training (``loss_and_grads``) and
inference (``predict_proba``, ``evaluate``), a model gives what a view of
it needs so that nobody runs the layers by hand: every layer's output by
name (``outputs``) and the gradient of the loss, or of any output, with
respect to the images and to every layer's output (``output_gradients``).
"""
from typing import NamedTuple

import numpy as np

from convnet.checks import check_count
from convnet.nn import layers as L
from convnet.nn.limits import parse_spec_text
from convnet.nn.losses import LOSS_OF_ACTIVATION
from convnet.nn.memory import aligned_zeros, views_like
from convnet.nn.specs import (  # noqa: F401 -- KERAS_CLASSES, spec_weights, summary_text: re-exported
    KERAS_CLASSES,
    WEIGHT_SUFFIXES,
    BadSpecError,
    check_memory,
    normalise_spec,
    spec_json,
    spec_summary,
    spec_weights,
    summary_text,
)

# Entries whose layers have parameters: the first of them needs no input gradient.
_WITH_PARAMETERS = ("Conv2D", "Dense", "BatchNormalization")


class OutputGradients(NamedTuple):
    """What :meth:`Sequential.output_gradients` returns.

    Attributes
    ----------
    value : float
        The differentiated quantity: the mean loss, or ``sum(output * dout)``.
    outputs : dict of str to ndarray
        Every output of the forward pass, as :meth:`Sequential.outputs`.
    gradients : dict of str to ndarray
        dvalue/d(output) for ``"input"`` (the images, (m, h, w, c)) and every
        layer's output up to the one differentiated, in spec order, each of
        its output's shape.
    """
    value: float
    outputs: dict
    gradients: dict


class Sequential:
    """A NumPy network built from a spec (see the module's docstring).

    Parameters
    ----------
    spec : list of dict, dict or CanonicalSpec
        The layers (see :mod:`convnet.nn.specs`), checked by
        :func:`normalise_spec` unless already canonical.
    seed : int
        Seeds the generator that draws the He-normal kernels (in layer
        order, so the ``lenet5`` spec draws exactly ``LeNet5``'s weights)
        and, through a spawned generator, the dropout masks.
    dtype : numpy dtype
        Dtype of weights and activations: float32 for training, float64 for
        gradient checks.
    micro_batch : int, optional
        As ``LeNet5``'s: ``loss_and_grads`` runs larger batches this many
        images at a time and adds up their gradients. Not allowed with
        BatchNormalization, whose batch statistics need the whole batch.
    input_gradient : bool
        Whether back-propagation reaches the images. Training needs only
        the parameters' gradients, so by default the first layer with
        parameters is built without its input gradient (half its backward
        work); a view that shows dL/d(images) builds its model with True.

    Attributes
    ----------
    spec : CanonicalSpec
        The canonical spec (see :func:`normalise_spec`).
    input_shape : tuple of int
        (h, w, c) of one image.
    layers : list
        The computing layers in spec order; a Conv2D or Dense entry with a
        hidden activation becomes two (the activation named ``conv1/relu``).
    loss_layer : SoftmaxCrossEntropy or SigmoidBinaryCrossEntropy
        The output's activation fused with the loss (``convnet.nn.losses``).
    """

    def __init__(self, spec, seed=0, dtype=np.float32, micro_batch=None, input_gradient=False):
        self.spec = normalise_spec(spec)
        self.dtype = np.dtype(dtype)
        # normalise_spec counted float32 numbers; float64 weights take twice the bytes.
        check_memory(self.spec, dtype=self.dtype)
        entries = self.spec["layers"]
        self.input_shape = self.spec.shapes[0]
        if micro_batch is not None:
            check_count("micro_batch", micro_batch)
            if any(entry["layer"] == "BatchNormalization" for entry in entries):
                raise ValueError("micro_batch cannot be used with BatchNormalization: its "
                                 "batch statistics need the whole batch")
        self.micro_batch = micro_batch
        self.seed = seed
        self.input_gradient = bool(input_gradient)
        rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        first = next(entry for entry in entries if entry["layer"] in _WITH_PARAMETERS)
        self.layers = []
        for entry, shape in zip(entries[1:], self.spec.shapes[:-1]):
            input_grad = self.input_gradient or entry is not first
            self.layers += self._build(entry, shape, rng, input_grad)
        last = entries[-1]["activation"]
        self.loss_layer = LOSS_OF_ACTIVATION[last]()
        self.num_classes = entries[-1]["units"] if last == "softmax" else 2
        self._pass = L.pool_before_relu(self.layers)
        # Training's backward pass ends at the first layer with parameters.
        stop = next(index for index, layer in enumerate(self._pass) if layer.params)
        self._backward_pass = self._pass[stop:][::-1]
        self._join_parameters()
        self._grad_sums = [np.zeros_like(param) for param in self.parameters()]

    def _build(self, entry, input_shape, rng, input_grad):
        """Return the computing layers of one spec entry for inputs of ``input_shape``."""
        kind, name, dtype = entry["layer"], entry["name"], self.dtype
        if kind == "ZeroPadding2D":
            return [L.ZeroPadding2D(name, entry["padding"])]
        if kind == "Conv2D":
            layer = L.Conv2D(name, tuple(entry["kernel"]), input_shape[2], entry["filters"],
                             entry["padding"], rng, dtype, input_grad=input_grad,
                             stride=tuple(entry["stride"]))
        elif kind in ("MaxPool2D", "AveragePool2D"):
            pool = L.MaxPool2D if kind == "MaxPool2D" else L.AveragePool2D
            return [pool(name, tuple(entry["pool"]), tuple(entry["stride"]), entry["padding"])]
        elif kind == "BatchNormalization":
            return [L.BatchNormalization(name, input_shape[-1], dtype, entry["momentum"],
                                         entry["epsilon"], input_grad)]
        elif kind == "ReLU":
            return [L.ReLU(name)]
        elif kind == "Flatten":
            return [L.Flatten(name)]
        elif kind == "Dropout":
            return [L.Dropout(name, entry["rate"], self._dropout_rng)]
        else:
            layer = L.Dense(name, input_shape[0], entry["units"], rng, dtype, input_grad)
        activation = entry["activation"]
        # The output's softmax or sigmoid is fused with the loss.
        if activation is None or entry is self.spec["layers"][-1]:
            return [layer]
        if activation == "relu":
            return [layer, L.ReLU(f"{name}/relu")]
        return [layer, L.Activation(f"{name}/{activation}", activation)]

    @property
    def has_dropout(self):
        """True if a layer draws random masks in training."""
        return any(isinstance(layer, L.Dropout) and layer.rate > 0 for layer in self.layers)

    @property
    def has_batch_normalization(self):
        """True if a layer keeps batch statistics (training then needs whole batches)."""
        return any(isinstance(layer, L.BatchNormalization) for layer in self.layers)

    def _join_parameters(self):
        """Make every trainable parameter, and its gradient, a view of one flat, aligned buffer.

        Whole-model checks (all weights finite) and exchanges (one message
        for every gradient) then handle one array instead of one per layer.
        A layer that writes its gradients in place (Dense) leaves them
        laid out as one buffer, which the optimiser reads without a copy.
        """
        size = sum(param.size for param in self.parameters())
        self.place_parameters(aligned_zeros(size, self.dtype))
        self.place_gradients(aligned_zeros(size, self.dtype))

    def place_parameters(self, flat, copy=True):
        """Make the parameters views of ``flat``, shape (n,) (memory other processes map, say).

        ``copy=False``: ``flat`` holds their values already. An optimiser built on
        the former arrays must ``follow`` the new ones; older replicas keep the former.
        """
        for (layer, key), view in zip(self._param_slots(), self._views_of(flat)):
            if copy:
                view[...] = layer.params[key]
            layer.params[key] = view
        self._flat = flat

    def place_gradients(self, flat):
        """Make the gradients views of ``flat``, as ``place_parameters``: a Dense layer fills them."""
        for (layer, key), view in zip(self._param_slots(), self._views_of(flat)):
            layer.grads[key] = view

    def _views_of(self, flat):
        size = sum(param.size for param in self.parameters())
        if not (isinstance(flat, np.ndarray) and flat.shape == (size,)
                and flat.dtype == self.dtype and flat.flags.writeable):
            raise ValueError(f"flat must be a writeable {self.dtype} array of shape ({size},), "
                             f"received {getattr(flat, 'dtype', type(flat).__name__)} "
                             f"{np.shape(flat)}")
        return views_like(flat, self.parameters())

    # ------------------------------------------------------------ parameters
    def _param_slots(self):
        """(layer, key) of every trainable parameter, in Keras ``get_weights`` order."""
        return [(layer, key) for layer in self.layers for key in layer.params]

    def _weight_slots(self):
        """(name, dict, key) of every weight, trainable or not, in Keras order."""
        slots = []
        for layer in self.layers:
            for store in (layer.params, layer.buffers):
                slots += [(f"{layer.name}/{WEIGHT_SUFFIXES[key]}", store, key) for key in store]
        return slots

    def parameter_names(self):
        """Return the names of the trainable parameters (``conv1/kernel``, ...), in order."""
        return [f"{layer.name}/{WEIGHT_SUFFIXES[key]}" for layer, key in self._param_slots()]

    def parameters(self):
        """Return the trainable parameter arrays themselves (not copies), in Keras order."""
        return [layer.params[key] for layer, key in self._param_slots()]

    @property
    def dropout_generator(self):
        """The generator the Dropout layers draw their masks from; None without Dropout.

        Assigning a ``numpy.random.Generator`` makes every Dropout layer draw
        from it from then on: a caller that needs masks independent of which
        process computes a batch (``convnet.parallel.distributed``) gives each batch a
        generator of its own.
        """
        dropouts = [layer for layer in self.layers if isinstance(layer, L.Dropout)]
        return dropouts[0].rng if dropouts else None

    @dropout_generator.setter
    def dropout_generator(self, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"dropout_generator must be a numpy.random.Generator, "
                            f"received {type(rng).__name__}")
        self._dropout_rng = rng
        for layer in self.layers:
            if isinstance(layer, L.Dropout):
                layer.rng = rng

    def flat_parameters(self):
        """Return the one flat buffer every trainable parameter is a view of."""
        return self._flat

    def gradients(self):
        """Return the gradients of the last ``loss_and_grads``, in ``parameters`` order."""
        return [layer.grads[key] for layer, key in self._param_slots()]

    def get_weights(self):
        """Return copies of every weight by name, in Keras ``get_weights()`` order.

        Returns
        -------
        dict of str to ndarray
            ``conv1/kernel`` (kh, kw, c_in, filters), ``conv1/bias`` (filters,),
            ``bn1/gamma``, ``bn1/beta``, ``bn1/moving_mean``,
            ``bn1/moving_variance`` (c,), ``dense1/kernel`` (units_in, units),
            ``dense1/bias`` (units,), ...; ``list(weights.values())`` is the
            list Keras's ``get_weights()`` gives for the twin.
        """
        return {name: store[key].copy() for name, store, key in self._weight_slots()}

    def set_weights(self, weights):
        """Copy ``weights`` into the model.

        Parameters
        ----------
        weights : dict of str to ndarray, or list of ndarray
            By name, every name of ``get_weights`` exactly once; or a list in
            ``get_weights`` order.

        Raises
        ------
        ValueError
            For a missing, unknown or extra weight, or one of the wrong shape.
        """
        slots = self._weight_slots()
        names = [name for name, _, _ in slots]
        if isinstance(weights, dict):
            missing = [name for name in names if name not in weights]
            unknown = [name for name in weights if name not in names]
            if missing or unknown:
                raise ValueError(f"weights must hold exactly {names}; missing {missing}, "
                                 f"unknown {unknown}")
            values = [weights[name] for name in names]
        else:
            values = list(weights)
            if len(values) != len(slots):
                raise ValueError(f"weights must be a list of {len(slots)} arrays, "
                                 f"received {len(values)}")
        for (name, store, key), value in zip(slots, values):
            value = np.asarray(value)
            if value.shape != store[key].shape:
                raise ValueError(f"weight {name} must have shape {store[key].shape}, "
                                 f"received {value.shape}")
            store[key][...] = value

    def summary(self):
        """Return the model's ``Summary``: :func:`convnet.nn.specs.spec_summary` of its spec."""
        return spec_summary(self.spec)

    def copy(self, input_gradient=None):
        """Return a new model of the same spec, seed, dtype and micro-batch with these weights.

        ``input_gradient`` defaults to this model's. The copy shares no
        array with this model.
        """
        twin = Sequential(self.spec, seed=self.seed, dtype=self.dtype,
                          micro_batch=self.micro_batch,
                          input_gradient=(self.input_gradient if input_gradient is None
                                          else input_gradient))
        twin.set_weights(self.get_weights())
        return twin

    def replica(self):
        """Return a model that computes with this model's very weights, on buffers of its own.

        Every parameter and buffer of the replica *is* this model's array (an
        update of one is an update of both); its layers keep their own
        forward caches, scratch space and gradients. Two threads may then run
        ``loss_and_grads`` at once, one on each model, and a step computed
        on the replica is the step this model would compute, to the bit.
        """
        twin = Sequential(self.spec, seed=self.seed, dtype=self.dtype,
                          micro_batch=self.micro_batch, input_gradient=self.input_gradient)
        for mine, theirs in zip(self.layers, twin.layers):
            theirs.params.update(mine.params)
            theirs.buffers.update(mine.buffers)
        twin._flat = self._flat
        return twin

    def to_json(self):
        """Return the canonical spec as JSON text; ``Sequential.from_json`` rebuilds the model."""
        return spec_json(self.spec)

    @classmethod
    def from_json(cls, text, **kwargs):
        """Return a model (fresh weights) built from the JSON text of a spec.

        Text longer than ``convnet.nn.limits.MAX_SPEC_BYTES`` or nesting
        brackets deeper than ``MAX_JSON_DEPTH`` is refused unparsed.
        """
        return cls(parse_spec_text(text, "spec text", BadSpecError), **kwargs)

    # ------------------------------------------------------------ computation
    def _images(self, X):
        """Check images and return them as (m, h, w, c) in the model's dtype."""
        X = np.asarray(X)
        h, w, c = self.input_shape
        if X.ndim == 3 and c == 1:
            X = X[..., np.newaxis]
        if X.ndim != 4 or X.shape[1:] != self.input_shape:
            gray = f"(m, {h}, {w}) or " if c == 1 else ""
            raise ValueError(f"X must have shape {gray}(m, {h}, {w}, {c}), received {X.shape}")
        return X.astype(self.dtype, copy=False)

    def _labels(self, Y, count):
        """Check integer labels for ``count`` images; return them as int64 (count,)."""
        Y = np.asarray(Y)
        if Y.shape != (count,):
            raise ValueError(f"Y must have shape ({count},) (one integer label per image), "
                             f"received {Y.shape}")
        if Y.dtype.kind not in "iu":
            raise TypeError(f"Y must hold integer labels, received dtype {Y.dtype}")
        if count and (Y.min() < 0 or Y.max() >= self.num_classes):
            raise ValueError(f"Y must hold labels 0-{self.num_classes - 1}, "
                             f"received values from {Y.min()} to {Y.max()}")
        return Y.astype(np.int64, copy=False)

    def forward(self, X, training=False):
        """Return the logits (before the output's softmax or sigmoid) for images ``X``.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c) (or (m, h, w) when c is 1)
            Images of the spec's input shape.
        training : bool
            Batch statistics (and moving-statistics updates) in
            BatchNormalization, random masks in Dropout.

        Returns
        -------
        ndarray of shape (m, k)
            Logits: k classes for a softmax output, 1 for a sigmoid output.
        """
        out = self._images(X)
        for layer in self._pass:
            out = layer.forward(out, training)
        return out

    def loss_and_grads(self, X, Y, training=True):
        """Forward and backward pass on one batch.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c)
            Images.
        Y : ndarray of shape (m,)
            Integer labels, 0 to k - 1 (0 or 1 for a sigmoid output).
        training : bool
            The mode of the forward pass (see ``forward``).

        Returns
        -------
        loss : float
            Mean cross-entropy of the batch.
        grads : list of ndarray
            Gradient of the loss for every trainable parameter, in
            ``parameters`` order (the arrays belong to the model: use them
            before the next call).
        """
        X = self._images(X)
        labels = self._labels(Y, len(X))
        count = len(X)
        if self.micro_batch is None or count <= self.micro_batch:
            return self._backpropagate(X, labels, training), self.gradients()
        total_loss = 0.0
        for sums in self._grad_sums:
            sums[...] = 0
        for start in range(0, count, self.micro_batch):
            stop = min(start + self.micro_batch, count)
            weight = (stop - start) / count
            total_loss += weight * self._backpropagate(X[start:stop], labels[start:stop],
                                                       training)
            for sums, grad in zip(self._grad_sums, self.gradients()):
                grad *= weight
                sums += grad
        return total_loss, self._grad_sums

    def _backpropagate(self, X, labels, training):
        """Forward and backward pass of checked images and labels; return the mean loss."""
        out = X
        for layer in self._pass:
            out = layer.forward(out, training)
        loss = self.loss_layer.forward(out, labels)
        dout = self.loss_layer.backward()
        for layer in self._backward_pass:
            dout = layer.backward(dout)
        return loss

    def predict_proba(self, X, batch_size=500):
        """Return probabilities, ``batch_size`` images at a time (inference mode).

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c)
            Images.
        batch_size : int
            Images per forward pass: bounds the memory of the intermediate maps.

        Returns
        -------
        ndarray of shape (m, k), or (m, 1) for a sigmoid output
            Class probabilities (rows sum to 1), or the probability of class 1.
        """
        check_count("batch_size", batch_size)
        X = self._images(X)
        chunks = [self.loss_layer.probabilities(self.forward(X[start:start + batch_size]))
                  for start in range(0, len(X), batch_size)]
        if not chunks:
            return np.zeros((0, self.spec["layers"][-1]["units"]), dtype=self.dtype)
        return np.concatenate(chunks)

    def evaluate(self, X, Y, batch_size=500):
        """Return ``(mean loss, accuracy)`` on ``X`` (m, h, w, c), ``Y`` (m,) (inference mode)."""
        total_loss, correct = self.evaluation_sums(X, Y, batch_size)
        if len(X) == 0:
            raise ValueError("cannot evaluate on an empty set of images")
        return total_loss / len(X), correct / len(X)

    def evaluation_sums(self, X, Y, batch_size=500):
        """Return ``(summed loss, number correct)`` on ``X``, ``Y`` (both 0 if empty).

        A sigmoid output predicts class 1 where its probability exceeds 0.5,
        as Keras's binary accuracy does.
        """
        check_count("batch_size", batch_size)
        X = self._images(X)
        labels = self._labels(Y, len(X))
        total_loss, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            logits = self.forward(X[start:start + batch_size])
            chunk_labels = labels[start:start + batch_size]
            total_loss += float(self.loss_layer.losses(logits, chunk_labels)
                                .sum(dtype=np.float64))
            if logits.shape[1] == 1:
                predicted = (logits[:, 0] > 0).astype(np.int64)
            else:
                predicted = logits.argmax(axis=1)
            correct += int((predicted == chunk_labels).sum())
        return total_loss, correct

    def outputs(self, X, training=False):
        """Return every layer's output for images ``X``, by name, in spec order.

        The layers run in the order the spec writes them (training's passes
        run max pooling before the ReLU it follows, with the same result),
        and each keeps what its ``backward`` needs.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c) (or (m, h, w) when c is 1)
            Images of the spec's input shape.
        training : bool
            As in :meth:`forward`.

        Returns
        -------
        dict of str to ndarray
            ``"input"``: ``X`` as (m, h, w, c) in the model's dtype; then each
            computing layer's output under its name (``conv1`` (m, h', w', c'),
            ``conv1/relu``, ..., the last layer's logits (m, k)); last the
            probabilities (m, k) under the output activation's name
            (``"softmax"`` or ``"sigmoid"``).
        """
        out = self._images(X)
        maps = {"input": out}
        for layer in self.layers:
            out = layer.forward(out, training)
            maps[layer.name] = out
        maps[self.loss_layer.name] = self.loss_layer.probabilities(out)
        return maps

    def feature_maps(self, X):
        """Return :meth:`outputs` of ``X`` (inference mode) as a list of (name, output) pairs."""
        return list(self.outputs(X).items())

    def output_gradients(self, X, Y=None, output=None, dout=None, training=False):
        """Back-propagate the loss, or one layer's output, to the images and every layer.

        Give ``Y`` for the gradient of the mean loss against those labels,
        or ``output`` (and optionally ``dout``) for the gradient of
        ``sum(outputs[output] * dout)``: with a one-hot ``dout`` on a class's
        logit, how each pixel and feature moves that logit. The layers'
        ``grads`` hold the parameters' gradients afterwards (see
        :meth:`gradients`).

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c) (or (m, h, w) when c is 1)
            Images.
        Y : ndarray of shape (m,), optional
            Integer labels.
        output : str, optional
            Name of a computing layer's output (see :meth:`outputs`).
        dout : ndarray of that output's shape, optional
            Weights of the output's values; default all ones.
        training : bool
            Mode of the forward pass.

        Returns
        -------
        OutputGradients
            ``value``, ``outputs`` and ``gradients``. The gradient with
            respect to the images, and to outputs before the first layer
            with parameters, needs a model built with ``input_gradient=True``;
            without it they are left out.

        Raises
        ------
        ValueError
            Unless exactly one of ``Y`` and ``output`` is given, for an
            unknown output name, or a ``dout`` of the wrong shape.
        """
        if (Y is None) == (output is None):
            raise ValueError("give either Y (the loss's gradient) or output (an output's), "
                             "not both or neither")
        maps = self.outputs(X, training)
        names = [layer.name for layer in self.layers]
        if Y is None:
            if output not in names:
                raise ValueError(f"output must be one of {', '.join(names)}, "
                                 f"received {output!r}")
            stop = names.index(output) + 1
            grad = np.ones_like(maps[output]) if dout is None else np.asarray(dout, self.dtype)
            if grad.shape != maps[output].shape:
                raise ValueError(f"dout must have the shape of {output}, "
                                 f"{maps[output].shape}, received {grad.shape}")
            value = float(np.sum(maps[output] * grad, dtype=np.float64))
        else:
            stop = len(self.layers)
            labels = self._labels(Y, len(maps["input"]))
            value = self.loss_layer.forward(maps[names[-1]], labels)
            grad = self.loss_layer.backward()
        gradients = {}
        for layer in reversed(self.layers[:stop]):
            gradients[layer.name] = grad
            grad = layer.backward(grad)
            if grad is None:
                break
        else:
            gradients["input"] = grad
        return OutputGradients(value, maps, dict(reversed(gradients.items())))

