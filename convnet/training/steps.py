"""How a batch's gradient is computed and applied: the steps a training loop runs.

The loop (``convnet.training.loop``) asks a *steps* object for three things:

- ``step(X, Y) -> loss``: one optimiser step on a batch, returning the
  batch's mean loss before the update;
- ``evaluate(sets, batch_size) -> [(loss, accuracy), ...]``: measurements
  of whole sets with the current weights;
- ``share_optimizer_state()``, after an epoch's last step: every process
  then holds the optimiser's whole state (a checkpoint saves it);

and reads ``is_writer`` (the one process that writes files and speaks).
``LocalSteps`` is this process alone; ``convnet.parallel.distributed.DataParallel``
shares the same steps among the ranks of an MPI job, with the same rule.

Each batch is cut into *shards* whose gradients are added in shard order;
any number of processes may compute them, each taking whole shards, so the
weights depend on the cut alone. The rule of a run names the cut (and the
BLAS threads, which change how a product adds its terms), and a checkpoint
records it (``rule_of``, ``check_same_rule``):

- ``"micro-batch M"``: shards of M images (the last may be smaller). A run
  that does not ask for a size gets ``default_micro_batch``'s, which
  depends on the batch size and the model only, never on the machine;
- ``"processes N"``: N nearly equal slices, the cut of runs made before the
  default became load-independent (one slice per process); ``", threads
  T"`` is added for one process whose BLAS ran on T threads;
- ``"whole batches"``: a model with BatchNormalization, whose batch
  statistics need each batch whole, in one process.
"""
import itertools
import re
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from convnet.checks import check_count
from convnet.errors import BadOptionError
from convnet.nn.lenet5 import MICRO_BATCH
from convnet.nn.memory import aligned_rows, aligned_zeros, joined_view, views_like
from convnet.nn.optim import add_weighted

# The thinnest shard worth cutting a batch into for another process: a shard of 16
# LeNet-5 images already costs a process about a fifth more per image than 32 at once.
MIN_SHARD = 16
# The same for a model of dense layers only, whose few products lose more on thinner
# shards: the MLP's epoch at batch 128 took 1.6 s on two ranks with halves of 64 against
# 1.8 to 2.0 s whole in one process; at batch 64, halves of 32 took 2.3 to 2.5 s on two
# ranks against 2.5 to 2.6 s whole, and 3.9 s in one process, one after the other.
MIN_DENSE_SHARD = 64


def uses_batch_statistics(model):
    """True if the model has a layer whose training output depends on the whole batch."""
    spec = getattr(model, "spec", None)
    layers = spec.get("layers", []) if isinstance(spec, dict) else []
    return any(entry.get("layer") == "BatchNormalization" for entry in layers)


def even_runs(count, parts):
    """Bounds of ``parts`` contiguous runs of ``count`` items: ``parts + 1`` offsets."""
    return [count * part // parts for part in range(parts + 1)]


def default_micro_batch(batch_size, shares_well=True):
    """The shard size of a run that does not ask for one: a function of the batch and the model.

    For a model with a convolution, shards of ``MICRO_BATCH`` (32) images,
    the slices its step runs at a time anyway
    (``convnet.training.trainer.build_model``), so one process pays nothing
    for the cut; a batch of 32 to 63 images is cut in two halves instead, so
    that two processes can share it; a smaller batch is not cut, since
    shards under ``MIN_SHARD`` images cost more than they save. A model of
    dense layers only is cut in two halves when each has at least
    ``MIN_DENSE_SHARD`` images, else not at all: its step is a few large
    matrix products, which run faster on a whole batch than on slices of
    it, so only two processes sharing long halves win.

    Parameters
    ----------
    batch_size : int
        Images per step, >= 1, already checked (a ``TrainConfig``'s, or by
        ``convnet.parallel.distributed.default_processes``).
    shares_well : bool
        The model has a convolution (its step is many small products, which
        processes share well), unlike a model of dense layers only.

    Returns
    -------
    int
        Images per shard, at most ``batch_size``.
    """
    if not shares_well:
        return -(-batch_size // 2) if batch_size >= 2 * MIN_DENSE_SHARD else batch_size
    if 2 * MIN_SHARD <= batch_size < 2 * MICRO_BATCH:
        return -(-batch_size // 2)
    return min(batch_size, MICRO_BATCH)


def rule_of(processes, micro_batch=None, whole_batches=False, threads=1):
    """What makes two runs of one seed agree bit for bit, as a string for a checkpoint.

    ``"micro-batch 16"``: shards of 16 images, any number of processes;
    ``"processes 2"``: two nearly equal slices (``micro_batch`` None), any
    number of processes; ``"processes 1, threads 2"``: one slice, BLAS on 2
    threads; ``"whole batches"``: a model with BatchNormalization, one process.
    """
    if whole_batches:
        return "whole batches"
    if micro_batch is None:
        return f"processes {processes}" + (f", threads {threads}" if threads > 1 else "")
    return f"micro-batch {micro_batch}"


def layout_of_rule(rule):
    """(slices, BLAS threads) a ``"processes N[, threads T]"`` rule fixes, or None for another rule."""
    found = re.fullmatch(r"processes (\d+)(?:, threads (\d+))?", rule or "")
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 1)


def micro_batch_of_rule(rule):
    """The shard size a ``"micro-batch M"`` rule fixes, or None for another rule."""
    found = re.fullmatch(r"micro-batch (\d+)", rule or "")
    return None if found is None else int(found.group(1))


def check_same_rule(saved, current):
    """Raise unless a run saved under rule ``saved`` may resume under rule ``current``.

    Both are ``rule_of`` strings; a checkpoint without one (``saved`` None)
    resumes under any rule.

    Raises
    ------
    BadOptionError
        Naming both rules and how to resume alike.
    """
    if saved is None or saved == current:
        return
    micro_batch = micro_batch_of_rule(saved)
    if micro_batch is not None:
        advice, fields = f"resume with {{micro_batch}} {micro_batch}", ("micro_batch",)
    elif layout_of_rule(saved) is not None:
        advice = ("resume without {processes} and {micro_batch}, which keeps the run's own "
                  "cut of each batch")
        fields = ("processes", "micro_batch")
    else:
        advice, fields = "resume with the options the run began with", ("micro_batch",)
    raise BadOptionError(f"this run was trained with {saved!r} and would resume with "
                         f"{current!r}: the weights would match neither uninterrupted run; "
                         f"{advice}", fields=fields)


class LocalSteps:
    """Training steps run by this process alone, under the rule of its cut of each batch.

    Parameters
    ----------
    model : Sequential
        Anything with ``parameters()`` (arrays updated in place, one dtype),
        ``loss_and_grads(X, Y) -> (mean loss, gradients)`` and
        ``evaluate(X, Y, batch_size)``; a ``dropout_generator`` property and
        ``place_gradients`` (see ``_gradient_into``) are used when present.
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``, in that order; its ``iterations``
        numbers the steps.
    micro_batch : int or None
        Images per shard (micro-batch), their gradients added in order: the
        same weights as any number of MPI ranks with this micro-batch.
    seed : int
        Seeds the Dropout masks, with the step's and micro-batch's numbers,
        so that they do not depend on which process computes a micro-batch.
    slices : int or None
        With ``micro_batch`` None: cut each batch into this many nearly
        equal slices instead (the ``"processes N"`` rule of older runs),
        whatever the number of processes. Both None: one slice per process,
        whole batches in one process.
    shard_threads : int
        Threads computing a batch's shards at once, each on a replica of
        the model (``model.replica()``) that shares its weights; their
        gradients are still added in shard order, so the weights do not
        depend on ``shard_threads``. NumPy lets go of the interpreter's lock in
        the matrix products and array loops, which are most of a
        convolution's step. 1 for whole batches.
    """

    rank, size = 0, 1

    def __init__(self, model, optimizer, micro_batch=None, seed=0, slices=None, shard_threads=1):
        if micro_batch is not None:
            check_count("micro_batch", micro_batch)
        if slices is not None:
            check_count("slices", slices)
        check_count("shard_threads", shard_threads)
        self.model, self.optimizer, self.seed = model, optimizer, int(seed)
        self.micro_batch, self.slices = micro_batch, slices
        self.whole_batches = uses_batch_statistics(model)
        self.shard_threads = 1 if self.whole_batches else shard_threads
        if self.shard_threads > 1 and not hasattr(model, "replica"):
            raise ValueError(f"shard_threads {shard_threads} needs a model with replica(), received "
                             f"{type(model).__name__}")
        self._team, self._pool = [model], None
        self.params = list(model.parameters())
        dtypes = {param.dtype for param in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"the model's parameters must share one dtype, received "
                             f"{sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self._uses_dropout = getattr(model, "dropout_generator", None) is not None
        self._size = sum(param.size for param in self.params)
        # The micro-batches' gradients, a row each (see ``_train``), and a spare row.
        self._rows = aligned_rows(0, self._size, self.dtype)
        self._spare = None
        # Per model or replica: (address of the row its gradients were placed in, their views).
        self._placed = {}
        # The optimiser can add the rows up itself as it steps (``step_part``).
        self._joined = joined_view(self.params) is not None

    @property
    def rule(self):
        """What makes two runs of one seed agree bit for bit (see ``rule_of``)."""
        return rule_of(self.slices or self.size, self.micro_batch, self.whole_batches)

    @property
    def is_writer(self):
        """True on the one process that writes files (checkpoints, logs)."""
        return self.rank == 0

    def micro_batches(self, count):
        """Bounds of the micro-batches of a batch of ``count`` images: a list of (start, stop)."""
        if self.whole_batches:
            return [(0, count)]
        if self.micro_batch is None:
            # More slices than images leave single images, as many slices as images do.
            runs = even_runs(count, min(self.slices or self.size, count))
            return [(start, stop) for start, stop in itertools.pairwise(runs) if stop > start]
        width = self.micro_batch
        return [(start, min(start + width, count)) for start in range(0, count, width)]

    def _gradient(self, X, Y, bounds, step, index, model=None):
        """Mean loss and gradients of micro-batch ``index``, whichever process or thread computes it.

        ``model`` is the model or replica that computes it (default the model).
        """
        model = self.model if model is None else model
        if self._uses_dropout:
            model.dropout_generator = np.random.default_rng([self.seed, step, index])
        start, stop = bounds
        return model.loss_and_grads(X[start:stop], Y[start:stop])

    def _gradient_into(self, row, X, Y, bounds, step, index, model=None):
        """Mean loss of micro-batch ``index``; its gradients, flattened, land in ``row``.

        A model with ``place_gradients`` (a ``Sequential``) first gets its
        gradients placed in the row, where its Dense layers write them
        directly; only those that a layer made anew are copied there.
        """
        model = self.model if model is None else model
        address = row.ctypes.data
        placed = self._placed.get(id(model))
        if placed is None or placed[0] != address:
            views = None
            if hasattr(model, "place_gradients"):
                model.place_gradients(row)
                views = model.gradients()
            self._placed[id(model)] = placed = (address, views)
        loss, grads = self._gradient(X, Y, bounds, step, index, model)
        views = placed[1]
        if views is None:
            np.concatenate([np.ravel(grad) for grad in grads], out=row)
        else:
            for view, grad in zip(views, grads):
                if grad is not view:
                    view[...] = grad
        return loss

    def _gradients_into(self, X, Y, shards, rows, step):
        """Mean losses of ``shards`` (a list of (index, bounds)), their gradients in ``rows``.

        The first shard is computed in this thread, the others at the same
        time by the pool's threads, each on its own replica; every thread
        has finished when this returns or raises.
        """
        (index, bounds), *others = shards
        if not others:
            return [self._gradient_into(rows[0], X, Y, bounds, step, index)]
        if self._pool is None:
            self._team += [self.model.replica() for _ in range(self.shard_threads - 1)]
            self._pool = ThreadPoolExecutor(self.shard_threads - 1, thread_name_prefix="shard")
        futures = [self._pool.submit(self._gradient_into, row, X, Y, shard_bounds, step,
                                     shard_index, model)
                   for (shard_index, shard_bounds), row, model
                   in zip(others, rows[1:], self._team[1:])]
        try:
            first = self._gradient_into(rows[0], X, Y, bounds, step, index)
        finally:
            # No thread may still be computing when the weights change.
            wait(futures)
        return [first] + [future.result() for future in futures]

    def step(self, X, Y):
        """Train on one batch; return the batch's mean loss before the update.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c)
            The batch's images.
        Y : ndarray of shape (m,)
            Their integer labels.

        Returns
        -------
        float
            The micro-batches' mean losses weighted by their sizes, added in order.
        """
        count = len(X)
        if count == 0:
            raise ValueError("X must hold at least one image, received an empty batch")
        if len(Y) != count:
            raise ValueError(f"Y must have one label per image: X has {count}, Y has {len(Y)}")
        step = self.optimizer.iterations + 1
        batches = self.micro_batches(count)
        weights = [(stop - start) / count for start, stop in batches]
        return self._train(X, Y, batches, weights, step)

    def _train(self, X, Y, batches, weights, step):
        """Compute the batch's gradient from its micro-batches, apply it; return the loss.

        One micro-batch's gradients are the batch's (a weight of 1 multiplies
        exactly). Several are computed ``shard_threads`` at a time, each into
        a row of one buffer, and the optimiser adds the rows up, weighted, in
        micro-batch order, a block at a time as it steps (``step_part``), so
        the sum never streams through memory on its own. An earlier wave of
        micro-batches is first added up onto the first row (``add_weighted``):
        the additions keep the micro-batches' order either way.
        """
        if len(batches) == 1:
            loss, grads = self._gradient(X, Y, batches[0], step, 0)
            self.optimizer.step(grads)
            return loss
        count, threads = len(batches), self.shard_threads
        rows = self._micro_batch_rows(count if count <= threads else threads + 1)
        shards = list(enumerate(batches))
        loss, held = 0.0, []   # the weight of each row holding a gradient
        for first in range(0, count, threads):
            if held:
                add_weighted(rows[:len(held)], held, rows[0], self._spare_row())
                held = [1.0]
            wave = shards[first:first + threads]
            targets = rows[len(held):len(held) + len(wave)]
            for (index, _), part in zip(wave, self._gradients_into(X, Y, wave, targets, step)):
                loss += weights[index] * part
                held.append(weights[index])
        rows = rows[:len(held)]
        if self._joined:
            self.optimizer.step_part(rows, slice(0, self._size), held)
        else:
            total = add_weighted(rows, held, rows[0], self._spare_row())
            self.optimizer.step(views_like(total, self.params))
        return loss

    def _micro_batch_rows(self, count):
        """At least ``count`` rows of the flattened parameters' length (a new buffer if needed)."""
        if len(self._rows) < count:
            self._rows = aligned_rows(count, self._size, self.dtype)
        return self._rows

    def _spare_row(self):
        """A row of the flattened parameters' length, for products about to be added."""
        if self._spare is None:
            self._spare = aligned_zeros(self._size, self.dtype)
        return self._spare

    def share_optimizer_state(self):
        """Nothing to do: one process holds the optimiser's whole state (see ``DataParallel``)."""

    def evaluate(self, sets, batch_size=500):
        """``model.evaluate`` on each ``(X, Y)`` of ``sets``.

        Parameters
        ----------
        sets : list of (ndarray of shape (m, h, w, c), ndarray of shape (m,))
            Images and integer labels; each set non-empty.
        batch_size : int
            Images per forward pass.

        Returns
        -------
        list of (float, float)
            ``(mean loss, accuracy)`` of each set.
        """
        self.check_sets(sets, batch_size)
        return [self.model.evaluate(X, Y, batch_size) for X, Y in sets]

    @staticmethod
    def check_sets(sets, batch_size):
        """Raise ValueError for a ``batch_size`` that is not a positive integer or an empty set."""
        check_count("batch_size", batch_size)
        if any(len(X) == 0 for X, _ in sets):
            raise ValueError("cannot evaluate on an empty set of images")

    def parameters_agree(self):
        """True: one process always agrees with itself (``DataParallel`` checks its ranks)."""
        return True
