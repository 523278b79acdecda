"""Where a NumPy training step's time goes: per-layer timers, and cProfile.

``python -m convnet.apps.bench.layers [--model NAME] [--steps N] [--batch-size B]
[--after N]`` prints the per-layer table (as ``convnet bench train --layers``),
timed after N untimed steps; with ``--profile`` the cProfile report of such
steps instead.
"""
import time

from convnet.apps.bench.flops import GEMM_SIZE, gemm_gflops
from convnet.apps.bench.timing import format_table, machine_info
from convnet.apps.bench.workload import NumpyStepper, spec_images, train_setting
from convnet.nn.flops import layer_flops


def _timed_stepper(model, batch, optimizer):
    """A NumpyStepper whose layers, loss and optimizer step add their seconds to a dict."""
    stepper = NumpyStepper(model, batch, optimizer)
    seconds = {}

    def timed(key, function):
        def run(*args):
            start = time.perf_counter()
            result = function(*args)
            seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
            return result
        return run

    for layer in stepper.model.layers + [stepper.model.loss_layer]:
        layer.forward = timed((layer.name, "forward"), layer.forward)
        layer.backward = timed((layer.name, "backward"), layer.backward)
    optimizer_name = f"{stepper.optimizer.name} step"
    stepper.optimizer.step = timed((optimizer_name, "forward"), stepper.optimizer.step)
    return stepper, seconds, optimizer_name


def _untimed_steps(stepper, X, Y, steps):
    """Train ``steps`` steps of the stepper, passing over X and Y as often as that takes."""
    while steps > 0:
        count = min(steps * stepper.batch, len(X))
        stepper.train(X[:count], Y[:count])
        steps -= -(-count // stepper.batch)


def time_layers(model="lenet5", steps=400, batch=None, optimizer=None, after=3):
    """Time every layer's forward and backward pass inside real NumPy training steps.

    Trains ``steps`` steps (a plain loop of :class:`NumpyStepper`, one BLAS
    thread) with each layer's ``forward`` and ``backward``, the loss and the
    optimizer's ``step`` wrapped in a timer, after ``after`` untimed steps.

    Parameters
    ----------
    model : str
        A zoo name or spec.json path.
    steps : int
        Steps timed (fewer if the data run out).
    batch, optimizer : int and str, optional
        As :func:`convnet.apps.bench.workload.train_setting` takes them.
    after : int
        Untimed steps first, at least one. A step late in an epoch can take
        longer than an early one (the optimiser's state is not what it was at
        the start): a thousand or two show where it goes there.

    Returns
    -------
    rows : list of list of str
        Layer, forward ms per step, backward ms per step, share of the step,
        and for a convolution or a dense layer the GFLOP/s of its products
        forward and backward (``convnet.nn.flops.layer_flops``: the spec's
        products, without the zeros of the engine's bands); the last row is
        the whole step.
    step_ms : float
        Milliseconds per step.
    """
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        raise ValueError(f"after must be a positive integer, received {after!r}")
    spec, batch, optimizer = train_setting(model, batch, optimizer)
    X, Y, _ = spec_images(spec)
    stepper, seconds, optimizer_name = _timed_stepper(spec, batch, optimizer)
    _untimed_steps(stepper, X, Y, after)
    seconds.clear()
    count = min(steps * batch, len(X))
    elapsed = stepper.train(X[:count], Y[:count])
    step_count = -(-count // batch)
    step_ms = elapsed * 1e3 / step_count
    per_step = {key: value * 1e3 / step_count for key, value in seconds.items()}
    products = {layer.name: layer for layer in layer_flops(spec)}
    rows = []
    names = [layer.name for layer in stepper.model.layers]
    for name in names + [stepper.model.loss_layer.name, optimizer_name]:
        forward, backward = per_step.get((name, "forward"), 0.0), per_step.get((name, "backward"))
        total = forward + (backward or 0.0)
        rows.append([name, f"{forward:.3f}", "" if backward is None else f"{backward:.3f}",
                     f"{100 * total / step_ms:.0f} %",
                     _rates(products.get(name), batch, forward, backward)])
    rows.append(["whole step", "", "", f"{step_ms:.2f} ms", ""])
    return rows, step_ms


def _rates(products, batch, forward_ms, backward_ms):
    """``"forward / backward"`` GFLOP/s of a layer's products ('' for a layer without)."""
    if products is None:
        return ""
    rates = []
    for flops, ms in ((products.forward, forward_ms),
                      (products.kernel_gradient + products.input_gradient, backward_ms)):
        rates.append(f"{flops * batch / (ms * 1e6):.0f}" if ms else "-")
    return " / ".join(rates)


LAYER_HEADERS = ["layer", "forward (ms)", "backward (ms)", "share of the step",
                 "GFLOP/s forward / backward"]


def product_rate_line():
    """The reference for the table's GFLOP/s: one BLAS thread's large float32 product."""
    return (f"the float32 product of two {GEMM_SIZE}x{GEMM_SIZE} matrices on one BLAS "
            f"thread: {gemm_gflops(threads=1):.0f} GFLOP/s")


def layers_report(model, rows, step_ms):
    """What the per-layer commands print under the machine: the step, the table, the reference."""
    return "\n".join([f"{model}: NumPy training step, {step_ms:.2f} ms",
                      format_table(LAYER_HEADERS, rows), product_rate_line()])


def profile_train_step(model="lenet5", steps=200, batch=None, top=15):
    """Profile ``steps`` NumPy training steps with cProfile.

    Parameters
    ----------
    model : str
        A zoo name or spec.json path.
    steps : int
        Steps profiled, after three untimed ones.
    batch : int, optional
        Default: the model's course batch.
    top : int
        How many functions the report lists.

    Returns
    -------
    stats : pstats.Stats
        Sorted by own time.
    text : str
        Its report of the ``top`` functions.
    """
    import cProfile
    import io
    import pstats

    spec, batch, optimizer = train_setting(model, batch)
    X, Y, _ = spec_images(spec)
    stepper = NumpyStepper(spec, batch, optimizer)
    stepper.train(X[:3 * batch], Y[:3 * batch])   # warm-up
    count = min(steps * batch, len(X))
    profiler = cProfile.Profile()
    profiler.enable()
    stepper.train(X[:count], Y[:count])
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    return stats, stream.getvalue()


def main():
    """``python -m convnet.apps.bench.layers``: the per-layer table, or the cProfile report."""
    import argparse
    parser = argparse.ArgumentParser(description="Where a NumPy training step's time goes.")
    parser.add_argument("--model", metavar="NAME", default="lenet5",
                        help="a zoo name or spec.json (default lenet5)")
    parser.add_argument("--steps", type=int, default=200, help="steps timed (default 200)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (default the model's course batch)")
    parser.add_argument("--after", type=int, default=3,
                        help="untimed steps before the timed ones (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile's report of the steps instead of the table")
    args = parser.parse_args()
    for name in ("steps", "after", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, "
                         f"received {value}")
    if args.profile:
        print(profile_train_step(args.model, steps=args.steps, batch=args.batch_size)[1])
        return
    print(machine_info(), flush=True)
    rows, step_ms = time_layers(args.model, steps=args.steps, batch=args.batch_size,
                                after=args.after)
    print(layers_report(args.model, rows, step_ms))


if __name__ == "__main__":
    main()
