"""How a NumPy run is spread: the cut of each batch, its processes and BLAS threads.

The cut fixes the sums, hence the weights: shards of a fixed size (the
``micro_batch`` asked for, else ``default_micro_batch``, a function of the
batch size and the model alone), the slices of a resumed run of an older
version, or whole batches for a model with BatchNormalization. The number
of processes changes the speed only: the one asked for, else one per idle
processor (``distributed.default_layout``). A ``Layout`` is chosen once, by
``choose`` (a run started here) or ``cut`` (a rank of a job whose size is
given), and everything after reads it.
"""
import dataclasses

from convnet.errors import BadOptionError
from convnet.nn.flops import training_flops
from convnet.parallel import distributed
from convnet.training.steps import default_micro_batch, layout_of_rule, micro_batch_of_rule

# Threads share a process's shards well only when a shard's products are long enough for
# NumPy to spend most of its time outside the interpreter's lock. Measured on two cores
# (one epoch, one process, two threads against one; docs/performance.md): LeNet-5's
# shards of 16 (36 MFLOP) 0.93 times as fast, cifar-cnn's of 16 (304 MFLOP) 1.21 times,
# mnist-cnn's of 32 (761 MFLOP) 1.72 times.
MIN_THREADED_SHARD_FLOPS = 150e6


@dataclasses.dataclass(frozen=True)
class Layout:
    """The spread of a NumPy run.

    Attributes
    ----------
    processes : int
        Processes sharing each step.
    micro_batch : int or None
        Images per shard; None for ``slices`` (or whole batches).
    slices : int or None
        Nearly equal slices per batch when ``micro_batch`` is None; 1 with
        whole batches.
    threads : int
        BLAS threads per process (1 but for a resumed older run that had more).
    shard_threads : int
        Threads computing the shards of a batch at once in a process alone
        (``LocalSteps``), on processors it does not start processes on, for
        shards of at least ``MIN_THREADED_SHARD_FLOPS``. They change the
        speed only.
    """

    processes: int
    micro_batch: int | None
    slices: int | None
    threads: int
    shard_threads: int = 1


def _plural(count):
    return f"processor{'s' if count > 1 else ''}"


def check_processes(count):
    """Refuse more training processes than this machine runs at once (two always allowed)."""
    processors = distributed.available_processors()
    most = max(processors, 2)
    if count > most:
        raise BadOptionError(
            f"{{processes}} {count} is more than this machine can run at once: {processors} "
            f"{_plural(processors)} available, so at most {most} (more hosts: see "
            "docs/distributed.md)", fields=("processes",))


def check_threads(threads, rule):
    """Refuse a resumed rule's BLAS ``threads`` where this machine has fewer processors.

    Fewer threads would add the products' terms in another order, and more
    than the processors would slow every step down: such a run is resumed
    on a machine that has them, or not at all.
    """
    processors = distributed.available_processors()
    if threads > processors:
        raise BadOptionError(
            f"this run was trained with {rule!r}, which needs {threads} BLAS threads, and this "
            f"machine runs {processors} {_plural(processors)}: fewer threads would add the "
            "products' terms in another order, so the weights would match no uninterrupted "
            "run; resume it on a machine with at least "
            f"{threads} processors, or train afresh in another {{out}}", fields=("resume", "out"))


def whole_batches(spec):
    """True for a model with BatchNormalization, whose batch statistics need each batch whole."""
    return any(entry["layer"] == "BatchNormalization" for entry in spec["layers"])


def dense_only(spec):
    """True for a model without convolution: its step is a few large matrix products."""
    return not any(entry["layer"] == "Conv2D" for entry in spec["layers"])


def _long_shards(spec, shard):
    """True if training on a shard of ``shard`` images takes long products enough for threads."""
    return training_flops(spec, shard) >= MIN_THREADED_SHARD_FLOPS


def _check_whole_batches(spec, processes, micro_batch):
    """Refuse several processes or shards for a model with BatchNormalization."""
    name = spec["name"]
    if processes is not None and processes > 1:
        raise BadOptionError(f"{{processes}} {processes}: model {name} has "
                             "BatchNormalization, whose batch statistics need the whole "
                             "batch; it trains in one process (pass {processes} 1)",
                             fields=("processes",))
    if micro_batch is not None:
        raise BadOptionError(f"{{micro_batch}} {micro_batch}: model {name} has "
                             "BatchNormalization, whose batch statistics need each batch "
                             "whole", fields=("micro_batch",))


def cut(spec, batch_size, micro_batch=None, saved_rule=None, processes=None):
    """The cut of each batch of a run, with ``processes`` (None: left to ``choose``).

    Parameters
    ----------
    spec : dict
        The model's canonical spec.
    batch_size : int
        Images per step.
    micro_batch : int or None
        The shard size asked for (``TrainConfig.micro_batch``).
    saved_rule : str or None
        The rule of the run to resume (``convnet.training.steps.rule_of``):
        its shards, or its slices and threads, are kept.
    processes : int or None
        The processes asked for (the config's, or an MPI job's size); each
        runs BLAS on one thread, so a resumed run keeps its threads only
        when the number is left open.

    Returns
    -------
    Layout
        Its ``processes`` is ``processes`` (1 if None).
    """
    count = 1 if processes is None else processes
    if whole_batches(spec):
        return Layout(count, None, 1, 1)
    if micro_batch is not None:
        return Layout(count, micro_batch, None, 1)
    saved = layout_of_rule(saved_rule)
    if saved is not None:
        slices, threads = saved
        return Layout(count, None, slices, threads if processes is None else 1)
    # A resumed run keeps the shards it began with, whatever today's default.
    shard = micro_batch_of_rule(saved_rule) or default_micro_batch(batch_size,
                                                                   not dense_only(spec))
    return Layout(count, shard, None, 1)


def choose(spec, batch_size, processes=None, micro_batch=None, saved_rule=None):
    """The layout of a run started in this process, decided now: its cut and processes.

    The processes: ``processes``, else one per idle processor, at most one
    per shard; one for whole batches or a resumed run's BLAS threads.
    Several processes need MPI: without it the default is one (asking for
    several says what to install). One process, asked for or for want of
    MPI, computes its shards on ``shard_threads`` threads: one per idle
    processor, at most one per shard, for shards of long products (see
    ``MIN_THREADED_SHARD_FLOPS``), else one. ``check_processes`` judges ``processes``
    against the machine, before anything is written.

    Parameters
    ----------
    spec : dict
        The model's canonical spec.
    batch_size, processes, micro_batch : int or None
        As ``TrainConfig`` has them.
    saved_rule : str or None
        The rule of the run to resume.

    Raises
    ------
    BadOptionError
        Several processes or a ``micro_batch`` for a model with
        BatchNormalization; a resumed run's threads the machine lacks.
    """
    if whole_batches(spec):
        _check_whole_batches(spec, processes, micro_batch)
    layout = cut(spec, batch_size, micro_batch, saved_rule, processes)
    if layout.threads > 1:
        check_threads(layout.threads, saved_rule)
    if whole_batches(spec) or layout.threads > 1 or (processes or 1) > 1:
        return layout
    shard = layout.micro_batch or -(-batch_size // layout.slices)
    if processes == 1:
        if not _long_shards(spec, shard):
            return layout
        return dataclasses.replace(
            layout, shard_threads=distributed.default_processes(batch_size, shard))
    if layout.slices is not None:
        count = min(layout.slices, distributed.default_processes(batch_size, shard))
    else:
        count, _ = distributed.default_layout(dense_only(spec), batch_size, layout.micro_batch)
    if count > 1 and not distributed.mpi_available():
        # Without MPI the shards that processes would share go to threads, where that pays.
        return dataclasses.replace(layout, processes=1,
                                   shard_threads=count if _long_shards(spec, shard) else 1)
    return dataclasses.replace(layout, processes=count)
