"""Adam, written the way Keras computes it, updating parameters in place.

Keras (3.x) folds both bias corrections into the step size::

    t      = iterations + 1
    alpha  = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    m     += (g - m) * (1 - beta1)
    v     += (g*g - v) * (1 - beta2)
    param -= alpha * m / (sqrt(v) + epsilon)

so ``epsilon`` is added to the *uncorrected* ``sqrt(v)``. Using the same
formulation keeps NumPy and Keras training runs comparable step for step.
"""
import math

import numpy as np

from convnet.memory import aligned_zeros, shared_zeros


class Adam:
    """Adam optimiser with Keras's defaults.

    Parameters
    ----------
    params : list of ndarray
        The parameter arrays (of one dtype), updated in place by ``step``.
        The two moment estimates of all of them live in two flat buffers
        (the parameters flattened and joined in order), allocated once here
        with the scratch space: a step runs each formula once over every
        parameter instead of once per array, and allocates nothing. The
        moments are in anonymous shared memory, so processes forked later
        can each update a part of them (``convnet.parallel``); every flat
        buffer starts on a 64-byte boundary (``convnet.memory``).
    lr : float
        Learning rate (Keras default 0.001).
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float
        Added to ``sqrt(v)`` for numerical stability (Keras default 1e-7).
    """

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7):
        if not lr > 0:
            raise ValueError(f"lr must be a positive number, received {lr}")
        self.params = list(params)
        dtypes = {param.dtype for param in self.params}
        if len(dtypes) > 1:
            raise ValueError("params must share one dtype, received "
                             f"{sorted(map(str, dtypes))}")
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.iterations = 0
        dtype = dtypes.pop() if dtypes else np.float32
        size = sum(param.size for param in self.params)
        self._flat_m, self._flat_v = shared_zeros(size, dtype), shared_zeros(size, dtype)
        self._grad, self._scratch = aligned_zeros(size, dtype), aligned_zeros(size, dtype)
        self.m, self.v = self._views(self._flat_m), self._views(self._flat_v)
        self._updates = self._views(self._scratch)

    def _views(self, flat):
        """Split a flat buffer into views shaped like the parameters."""
        views, offset = [], 0
        for param in self.params:
            views.append(flat[offset:offset + param.size].reshape(param.shape))
            offset += param.size
        return views

    def step(self, grads):
        """Apply one Adam update.

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
        if grads:
            np.concatenate([np.ravel(grad) for grad in grads], out=self._grad)
        t = self.iterations + 1
        self.flat_update(self._grad, t, out=self._scratch)
        for param, update in zip(self.params, self._updates):
            param -= update
        self.iterations = t

    def flat_update(self, g, t, part=slice(None), out=None):
        """Advance the moments of some elements and return their update.

        Parameters
        ----------
        g : ndarray of shape (n,)
            Gradient of the elements ``part`` of the flattened parameters.
        t : int
            Number of the step, from 1 (sets the bias correction).
        part : slice
            Which elements of the flattened parameters (n of them).
        out : ndarray of shape (n,), optional
            Receives the result; not ``g``, which is read to the end.

        Returns
        -------
        ndarray of shape (n,)
            The amount to subtract from those elements of the parameters.
            ``iterations`` is left to the caller.
        """
        alpha = self.lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        m, v = self._flat_m[part], self._flat_v[part]
        scratch = np.empty_like(g) if out is None else out
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

    def state(self):
        """Return the optimiser's state as a dict of arrays (for a checkpoint).

        Keys: ``"iterations"`` (int64 scalar), ``"m0"``, ``"v0"``, ``"m1"``, ... one
        pair per parameter, in the order of ``params``.
        """
        state = {"iterations": np.int64(self.iterations)}
        for index, (m, v) in enumerate(zip(self.m, self.v)):
            state[f"m{index}"] = m.copy()
            state[f"v{index}"] = v.copy()
        return state

    def load_state(self, state):
        """Restore a state produced by ``state()`` (shapes are checked)."""
        try:
            iterations = int(state["iterations"])
            for index, (m, v) in enumerate(zip(self.m, self.v)):
                for name, buffer in ((f"m{index}", m), (f"v{index}", v)):
                    value = np.asarray(state[name])
                    if value.shape != buffer.shape:
                        raise ValueError(f"optimizer state {name!r} has shape {value.shape}, "
                                         f"expected {buffer.shape}")
                    buffer[...] = value
        except KeyError as error:
            raise ValueError(f"optimizer state is missing {error.args[0]!r}") from None
        self.iterations = iterations
