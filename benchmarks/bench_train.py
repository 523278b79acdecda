#!/usr/bin/env python3
"""Time a training epoch of the NumPy engines against the Keras twin's ``fit``.

Same as ``convnet bench train [--model NAME ...] [--engine NAME ...] [--quick] [--steps N]
[--runs N] [--layers]``; see ``convnet.apps.bench.bench.bench_train``. ``--profile`` instead profiles
NumPy training steps of the first model with cProfile.
"""
import sys

from convnet.apps.bench.bench import profile_train_step
from convnet.apps.cli.cli import main

if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        arguments = sys.argv[1:]
        model = arguments[arguments.index("--model") + 1] if "--model" in arguments else "lenet5"
        print(profile_train_step(model)[1])
    else:
        sys.exit(main(["bench", "train", *sys.argv[1:]]))
