"""Adam, RMSprop and SGD, written the way Keras 3 computes them, updating in place.

Each optimiser follows Keras's own order of operations, so that NumPy and Keras
training runs stay comparable step for step. With ``g`` the gradient and ``t``
the number of the step (from 1):

Adam (Keras folds both bias corrections into the step size, so ``epsilon`` is
added to the *uncorrected* ``sqrt(v)``)::

    alpha  = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    m     += (g - m) * (1 - beta1)
    v     += (g*g - v) * (1 - beta2)
    param -= alpha * m / (sqrt(v) + epsilon)

RMSprop (``epsilon`` is added *inside* the square root)::

    v      = rho * v + (1 - rho) * g*g
    a      = rho * a + (1 - rho) * g              (centered only)
    denom  = v - a*a + epsilon   if centered else   v + epsilon
    step   = lr * g / sqrt(denom)
    mom    = momentum * mom + step                (momentum > 0 only)
    param -= mom   if momentum > 0 else   step

SGD (the velocity holds the *negative* step)::

    param -= lr * g                               (momentum = 0)
    vel    = momentum * vel - lr * g              (momentum > 0)
    param += vel                                  (classical)
    param += momentum * vel - lr * g              (nesterov)

The state of every optimiser lives in flat buffers (the parameters flattened
and joined in order) allocated once: a step runs each formula once over every
parameter instead of once per array, and allocates nothing. When the
parameters are themselves consecutive views of one buffer (as a
``Sequential`` model's are), the step goes through the buffers a block of
``BLOCK`` numbers at a time, every formula on one block before the next: the
block stays in the processor's cache between the formulas, instead of each
formula streaming megabytes from memory; the formulas' temporaries take the
same memory for every block, so they stay in the cache too. Every number
still goes through the same operations in the same order, so the results are
the same to the bit.

Every ``FLUSH_STEPS`` steps, the state's subnormal numbers (smaller in
magnitude than the dtype's smallest normal number) are set to zero. The
moments of a parameter whose gradient stays zero (the weights of a unit that
a ReLU keeps off) decay by a constant factor every step and would otherwise
sink through the subnormal range, where an x86 processor takes many times
longer for each arithmetic operation: trained on random images (where most
units die), cifar-cnn's RMSprop state was mostly subnormal after 1,500
steps, and its step took three times as long; LeNet-5 on MNIST, 2.8 times
as long for Adam. (TensorFlow runs its CPU kernels with subnormals flushed to zero for
the same reason.) A number decaying by 0.9 a step stays subnormal for about
150 steps; flushed every ``FLUSH_STEPS``, at most that many, at a sixteenth
of the cost of a flush every step. The parameters move as before: such a
number changes an update by far less than the last bit of a parameter of
ordinary size.
"""
import inspect
import math
import numbers

import numpy as np

from convnet.nn.memory import aligned_zeros, joined_view, views_like

# Numbers per block of a step over flat buffers (256 KiB of float32): a block's
# gradient, state, scratch and parameters, five or six such arrays, fit a 2 MiB
# level-2 cache together. Blocks of 16k numbers were 20 % slower (the cost of
# each NumPy call), of 256k 20 % slower too (they left the cache).
BLOCK = 1 << 16

# Steps between flushes of the state's subnormal numbers to zero (see above).
FLUSH_STEPS = 16


def _check_real(name, value, low, high, low_open=False, high_open=False):
    """Return ``value`` as a float, or raise ValueError naming ``name`` and the range."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, received {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, received {value!r}")
    return float(value)


def _check_learning_rate(lr):
    if (isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0
            or not math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, received {lr!r}")
    return float(lr)


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, received {value!r}")
    return bool(value)


def add_weighted(rows, weights, out, scratch):
    """``rows[0] * weights[0] + rows[1] * weights[1] + ...``, multiplied and added in that order.

    The one way the gradients of a batch's micro-batches are added up, so
    that every way of computing them gives the same numbers, bit for bit.

    Parameters
    ----------
    rows : ndarray of shape (k, n)
        k >= 1 rows to add up.
    weights : sequence of k float
    out : ndarray of shape (n,)
        Where the sum goes; it may be ``rows[0]`` itself.
    scratch : ndarray of shape (n,)
        Holds each product after the first.

    Returns
    -------
    ndarray of shape (n,)
        ``out``.

    When every weight is the same power of two (a batch cut into two, four,
    eight... equal shards), the rows are added in that order and the sum
    multiplied once, a pass less per row: multiplying by a power of two only
    moves the exponent, so the sum is the same to the bit unless a number on
    the way leaves the normal range (below about 1e-38 or above 3e38 in
    float32), which a training that has not diverged never comes near.
    """
    first = weights[0]
    if len(weights) > 1 and math.frexp(first)[0] == 0.5 and all(
            weight == first for weight in weights):
        np.add(rows[0], rows[1], out=out)
        for row in rows[2:]:
            out += row
        out *= first
        return out
    np.multiply(rows[0], weights[0], out=out)
    for row, weight in zip(rows[1:], weights[1:]):
        np.multiply(row, weight, out=scratch)
        out += scratch
    return out


class _FlatOptimizer:
    """Shared machinery: flat state buffers, ``step``, ``state`` and ``load_state``.

    A subclass sets ``name``, lists the state it keeps per parameter in
    ``_slot_names()`` and computes one update in ``_update``.
    """

    name = ""

    def __init__(self, params):
        self.params = list(params)
        dtypes = {param.dtype for param in self.params}
        if len(dtypes) > 1:
            raise ValueError("params must share one dtype, received "
                             f"{sorted(map(str, dtypes))}")
        self.iterations = 0
        dtype = dtypes.pop() if dtypes else np.float32
        size = sum(param.size for param in self.params)
        self._flat = {slot: aligned_zeros(size, dtype) for slot in self._slot_names()}
        self._slots = {slot: views_like(flat, self.params) for slot, flat in self._flat.items()}
        self._grad, self._scratch = aligned_zeros(size, dtype), aligned_zeros(size, dtype)
        self._updates = views_like(self._scratch, self.params)
        self._below = np.zeros(min(size, BLOCK), bool)
        # The state's numbers as unsigned integers, for _flush_subnormal.
        self._bits = None
        if np.issubdtype(dtype, np.floating):
            self._bits = np.dtype(f"u{np.dtype(dtype).itemsize}")
            self._magnitude = self._bits.type(np.iinfo(self._bits).max >> 1)
            self._smallest_normal = np.array(np.finfo(dtype).tiny, dtype).view(self._bits)[()]
        self._joined_params = joined_view(self.params, writeable=True)

    def follow(self, params):
        """Update ``params`` from now on: the arrays it updated, moved (``place_parameters``).

        The state is kept. ValueError unless the shapes and dtype are the former ones.
        """
        params = list(params)
        if [(param.shape, param.dtype) for param in params] != [
                (param.shape, param.dtype) for param in self.params]:
            raise ValueError("params must have the shapes and dtype of the parameters "
                             f"followed until now, {[param.shape for param in self.params]}, "
                             f"received {[np.shape(param) for param in params]}")
        self.params = params
        self._joined_params = joined_view(self.params, writeable=True)

    def _slot_names(self):
        """Names of the per-parameter state buffers, also the keys' stems in ``state()``."""
        raise NotImplementedError

    def slot_names(self):
        """Return the names of the state buffers kept per parameter (Adam: ``("m", "v")``)."""
        return tuple(self._slot_names())

    def config(self):
        """Return ``{"name": ..., hyper-parameter: value, ...}``; ``make_optimizer`` accepts it."""
        hyper = inspect.signature(type(self).__init__).parameters
        return {"name": self.name,
                **{key: getattr(self, key) for key in list(hyper)[2:]}}

    def step(self, grads):
        """Apply one update to the parameters, in place.

        Parameters
        ----------
        grads : list of ndarray
            Gradients, one per parameter, with the parameters' shapes.
        """
        grads = list(grads)
        if len(grads) != len(self.params) or any(
                np.shape(grad) != param.shape for grad, param in zip(grads, self.params)):
            raise ValueError("grads must match the parameters' shapes "
                             f"{[param.shape for param in self.params]}, received "
                             f"{[np.shape(grad) for grad in grads]}")
        # Gradients already laid out as one buffer (a sum of micro-batches') need no copy.
        g = joined_view(grads) if grads else None
        if g is None:
            g = self._grad
            if grads:
                np.concatenate([np.ravel(grad) for grad in grads], out=g)
        t = self.iterations + 1
        joined = self._joined_params
        if joined is None:
            self._update(g, t, slice(None))
            for param, update in zip(self.params, self._updates):
                param -= update
            if t % FLUSH_STEPS == 0:
                for first in range(0, g.size, BLOCK):
                    self._flush_subnormal(slice(first, min(first + BLOCK, g.size)))
        else:
            self._update_blocks(joined, g, t, 0, joined.size)
        self.iterations = t

    def step_part(self, g, part, weights=None):
        """Apply one step's update to the flattened parameters in ``part`` only, in place.

        Every formula is element-wise, so the parts of a step taken by
        several processes give the numbers that one ``step`` gives, bit for
        bit; the state of the other parameters is left as it was (see
        ``flat_slots``). ``iterations`` counts the step.

        Parameters
        ----------
        g : ndarray of shape (part.stop - part.start,), or (k, part.stop - part.start)
            The gradient of those flattened parameters; with ``weights``, k
            gradients (of k micro-batches, say) to add up first.
        part : slice
            Contiguous, with a start and a stop: which of the n flattened
            parameters, in the order of ``params``.
        weights : sequence of k float, optional
            The gradient is then ``g[0] * weights[0] + g[1] * weights[1] + ...``,
            added up by ``add_weighted``, a block at a time while the block
            is in the cache.

        Raises
        ------
        ValueError
            The parameters are not consecutive views of one buffer (as a
            ``Sequential`` model's are), or ``g`` does not fit ``part``.
        """
        joined = self._joined_params
        if joined is None:
            raise ValueError("step_part needs parameters that are consecutive views of one "
                             "buffer (a Sequential model's parameters() are)")
        start, stop, _ = part.indices(joined.size)
        expected = (stop - start,) if weights is None else (len(weights), stop - start)
        if np.shape(g) != expected:
            raise ValueError(f"g must have shape {expected} for part {part}, received "
                             f"{np.shape(g)}")
        t = self.iterations + 1
        self._update_blocks(joined, g, t, start, stop, weights)
        self.iterations = t

    def _update_blocks(self, joined, g, t, start, stop, weights=None):
        """Update ``joined[start:stop]`` by ``g`` (its gradient, or gradients and weights)."""
        flush = t % FLUSH_STEPS == 0
        for first in range(start, stop, BLOCK):
            block = slice(first, min(first + BLOCK, stop))
            g_block = g[..., first - start:block.stop - start]
            if weights is not None:
                g_block = self._weighted_sum(g_block, weights)
            joined[block] -= self._update(g_block, t, block)
            if flush:
                self._flush_subnormal(block)

    def _flush_subnormal(self, block):
        """Set the state's subnormal numbers in ``block`` (at most ``BLOCK`` long) to zero.

        See the module docstring. The test runs on the numbers' bits: an
        integer never costs more on a subnormal, and with the sign cleared
        and one taken away, zero wraps to the largest integer, so only
        subnormals fall below the smallest normal's bits less one. The mask is
        then sparse, which a masked copy goes through fast. Uses the scratch
        buffer: only once the block's update has been applied.
        """
        if self._bits is None:
            return
        count = block.stop - block.start
        scratch, below = self._scratch[:count].view(self._bits), self._below[:count]
        for flat in self._flat.values():
            values = flat[block]
            np.bitwise_and(values.view(self._bits), self._magnitude, out=scratch)
            np.subtract(scratch, 1, out=scratch)
            np.less(scratch, self._smallest_normal - 1, out=below)
            np.copyto(values, 0, where=below)

    def _weighted_sum(self, rows, weights):
        """``add_weighted`` of the rows' k numbers into the first k of ``_grad``.

        The first k of ``_scratch`` hold each product after the first;
        ``_update`` overwrites them afterwards.
        """
        count = rows.shape[-1]
        return add_weighted(rows, weights, self._grad[:count], self._scratch[:count])

    def flat_slots(self):
        """The state buffers themselves, by slot name: flat, in the order of ``params``.

        For exchanging parts of the state between processes that each
        stepped their own part (``step_part``); ``state`` gives copies by
        parameter.
        """
        return dict(self._flat)

    def _update(self, g, t, block):
        """Advance the state of ``block`` by one step and return its update.

        Parameters
        ----------
        g : ndarray of shape (k,)
            The gradient of the flattened parameters in ``block``.
        t : int
            Number of the step, from 1.
        block : slice
            Which k of the n flattened parameters (``slice(None)``: all).

        Returns
        -------
        ndarray of shape (k,)
            The amount to subtract from those parameters, in the first k
            numbers of ``self._scratch``. ``iterations`` is left to the caller.
        """
        raise NotImplementedError

    def state(self):
        """Return the optimiser's state as a dict of arrays (for a checkpoint).

        Keys: ``"iterations"`` (int64 scalar), then for each parameter, in the
        order of ``params``, one array per state buffer named after the buffer
        and the parameter's index (Adam: ``"m0"``, ``"v0"``, ``"m1"``, ...).
        """
        state = {"iterations": np.int64(self.iterations)}
        for index in range(len(self.params)):
            for slot, views in self._slots.items():
                state[f"{slot}{index}"] = views[index].copy()
        return state

    def load_state(self, state):
        """Restore a state produced by ``state()``.

        Shapes are checked, and keys this optimiser does not keep are refused (a
        state written by another optimiser, or with other hyper-parameters).
        """
        expected = set(self.state())
        unexpected = sorted(set(state) - expected)
        if unexpected:
            raise ValueError(f"optimizer state has keys {unexpected} that {self.name} with "
                             f"these hyper-parameters does not keep (expected "
                             f"{sorted(expected)}); was it written by another optimizer?")
        try:
            iterations = int(state["iterations"])
            for index in range(len(self.params)):
                for slot, views in self._slots.items():
                    name, buffer = f"{slot}{index}", views[index]
                    value = np.asarray(state[name])
                    if value.shape != buffer.shape:
                        raise ValueError(f"optimizer state {name!r} has shape {value.shape}, "
                                         f"expected {buffer.shape}")
                    buffer[...] = value
        except KeyError as error:
            raise ValueError(f"optimizer state is missing {error.args[0]!r}") from None
        self.iterations = iterations


class Adam(_FlatOptimizer):
    """Adam optimiser with Keras's defaults.

    Parameters
    ----------
    params : list of ndarray
        The parameter arrays (of one dtype), updated in place by ``step``.
        The two moment estimates of all of them live in two flat buffers,
        allocated once with the scratch space: a step runs each formula once
        over every parameter instead of once per array, and allocates
        nothing. Every flat buffer starts on a 64-byte boundary
        (``convnet.nn.memory``).
    lr : float
        Learning rate (Keras default 0.001).
    beta1, beta2 : float
        Decay rates of the first and second moment estimates, in [0, 1).
    epsilon : float
        Added to ``sqrt(v)`` for numerical stability (Keras default 1e-7), >= 0.
    """

    name = "adam"

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7):
        self.lr = _check_learning_rate(lr)
        self.beta1 = _check_real("beta1", beta1, 0, 1, high_open=True)
        self.beta2 = _check_real("beta2", beta2, 0, 1, high_open=True)
        self.epsilon = _check_real("epsilon", epsilon, 0, math.inf)
        super().__init__(params)
        self._flat_m, self._flat_v = self._flat["m"], self._flat["v"]
        self.m, self.v = self._slots["m"], self._slots["v"]

    def _slot_names(self):
        return ("m", "v")

    def _update(self, g, t, block):
        alpha = self.lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        m, v = self._flat_m[block], self._flat_v[block]
        scratch = self._scratch[:len(g)]
        # m += (g - m) * (1 - beta1)
        np.subtract(g, m, out=scratch)
        scratch *= 1 - self.beta1
        m += scratch
        # v += (g*g - v) * (1 - beta2)
        np.multiply(g, g, out=scratch)
        scratch -= v
        scratch *= 1 - self.beta2
        v += scratch
        # update = alpha * m / (sqrt(v) + epsilon)
        np.sqrt(v, out=scratch)
        scratch += self.epsilon
        np.divide(m, scratch, out=scratch)
        scratch *= alpha
        return scratch


class RMSprop(_FlatOptimizer):
    """RMSprop with Keras's defaults and formulation (see the module docstring).

    Parameters
    ----------
    params : list of ndarray
        Updated in place by ``step``, all of one dtype; the running mean square
        of their gradients (and the momentum and mean gradient, when asked
        for) is kept in flat buffers, as :class:`Adam` keeps its moments.
    lr : float
        Scale of the gradient before it is divided by its root mean square
        (Keras default 0.001).
    rho : float
        Decay rate of the mean square of the gradients, in [0, 1) (default 0.9).
    momentum : float
        Momentum of the steps, in [0, 1) (default 0: no momentum buffer is kept).
    epsilon : float
        Added to the mean square before its square root (default 1e-7), >= 0.
    centered : bool
        Divide by the estimated variance of the gradients instead of their mean
        square (keeps a running mean of the gradients too).
    """

    name = "rmsprop"

    def __init__(self, params, lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        self.lr = _check_learning_rate(lr)
        self.rho = _check_real("rho", rho, 0, 1, high_open=True)
        self.momentum = _check_real("momentum", momentum, 0, 1, high_open=True)
        self.epsilon = _check_real("epsilon", epsilon, 0, math.inf)
        self.centered = _check_flag("centered", centered)
        super().__init__(params)
        # A second scratch buffer: Keras's order needs lr * g and the denominator at once.
        self._work = aligned_zeros(self._scratch.size, self._scratch.dtype)

    def _slot_names(self):
        return (("velocity",) + (("momentum",) if self.momentum > 0 else ())
                + (("average_gradient",) if self.centered else ()))

    def _update(self, g, t, block):
        rho = self.rho
        velocity = self._flat["velocity"][block]
        scratch = self._scratch[:len(g)]
        work = self._work[:len(g)]
        # velocity = rho * velocity + (1 - rho) * g*g
        np.multiply(g, g, out=scratch)
        scratch *= 1 - rho
        velocity *= rho
        velocity += scratch
        if self.centered:
            average = self._flat["average_gradient"][block]
            np.multiply(g, 1 - rho, out=scratch)
            average *= rho
            average += scratch
            # denominator = velocity - average**2 + epsilon
            np.multiply(average, average, out=work)
            np.subtract(velocity, work, out=work)
            work += self.epsilon
        else:
            np.add(velocity, self.epsilon, out=work)
        np.sqrt(work, out=work)
        # step = lr * g / sqrt(denominator)
        np.multiply(g, self.lr, out=scratch)
        scratch /= work
        if self.momentum > 0:
            momentum = self._flat["momentum"][block]
            momentum *= self.momentum
            momentum += scratch
            scratch[...] = momentum
        return scratch


class SGD(_FlatOptimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as Keras computes it.

    Parameters
    ----------
    params : list of ndarray
        Updated in place by ``step``, all of one dtype; with momentum, their
        velocity is kept in one flat buffer.
    lr : float
        Step size along the negative gradient (Keras default 0.01).
    momentum : float
        In [0, 1] (default 0: plain gradient descent, no velocity buffer kept).
    nesterov : bool
        Use Nesterov momentum (look ahead along the velocity).
    """

    name = "sgd"

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False):
        self.lr = _check_learning_rate(lr)
        self.momentum = _check_real("momentum", momentum, 0, 1)
        self.nesterov = _check_flag("nesterov", nesterov)
        super().__init__(params)
        if self.momentum > 0 and self.nesterov:
            self._work = aligned_zeros(self._scratch.size, self._scratch.dtype)

    def _slot_names(self):
        return ("velocity",) if self.momentum > 0 else ()

    def _update(self, g, t, block):
        scratch = self._scratch[:len(g)]
        np.multiply(g, self.lr, out=scratch)
        if self.momentum == 0:
            return scratch
        velocity = self._flat["velocity"][block]
        # velocity = velocity * momentum - lr * g
        velocity *= self.momentum
        velocity -= scratch
        if not self.nesterov:
            # param += velocity, i.e. subtract -velocity (negation is exact)
            return np.negative(velocity, out=scratch)
        # param += velocity * momentum - lr * g, i.e. subtract lr * g - velocity * momentum
        work = self._work[:len(g)]
        np.multiply(velocity, self.momentum, out=work)
        scratch -= work
        return scratch


OPTIMIZERS = {"adam": Adam, "rmsprop": RMSprop, "sgd": SGD}


def make_optimizer(name, params, **hyper):
    """Build an optimiser by name.

    Parameters
    ----------
    name : str
        ``"adam"``, ``"rmsprop"`` or ``"sgd"`` (case-insensitive).
    params : list of ndarray
        The parameter arrays (of one dtype), updated in place by ``step``.
    **hyper
        That optimiser's hyper-parameters (``lr`` and the others of its class);
        omitted ones take Keras's defaults.

    Returns
    -------
    Adam, RMSprop or SGD

    Raises
    ------
    ValueError
        An unknown name, a hyper-parameter the optimiser does not take, or a
        value out of its range.
    TypeError
        A flag (``centered``, ``nesterov``) that is not a bool.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, received {name!r}")
    cls = OPTIMIZERS[key]
    accepted = list(inspect.signature(cls.__init__).parameters)[2:]
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise ValueError(f"{key} takes the hyper-parameters {', '.join(accepted)}; "
                         f"received {', '.join(map(repr, unknown))}")
    return cls(params, **hyper)
