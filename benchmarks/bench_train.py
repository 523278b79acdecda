#!/usr/bin/env python3
"""Time one epoch of the NumPy LeNet-5 trainer against Keras ``fit``.

Same as ``convnet bench train [--quick] [--runs N]``; see ``convnet.bench.bench_train``.
``--profile`` instead profiles NumPy training steps with cProfile;
``--layers`` times each layer's forward and backward pass inside them.
"""
import argparse

from convnet.bench import bench_train, profile_train_step, time_layers

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="time 6,400 images and scale to an epoch")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure each batch size N times and add a row of medians")
    parser.add_argument("--profile", action="store_true",
                        help="profile 200 NumPy training steps at batch 32 instead")
    parser.add_argument("--layers", action="store_true",
                        help="time each layer inside 400 NumPy training steps at batch 32 instead")
    args = parser.parse_args()
    if args.layers:
        time_layers()
    elif args.profile:
        profile_train_step()
    else:
        bench_train(quick=args.quick, runs=args.runs)
