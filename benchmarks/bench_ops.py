#!/usr/bin/env python3
"""Time the NumPy layer operations (tasks 0-3) against TensorFlow.

Same as ``convnet bench ops [--quick]``; see ``convnet.apps.bench.bench.bench_ops``.
"""
import argparse

from convnet.apps.bench.bench import bench_ops

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs")
    bench_ops(quick=parser.parse_args().quick)
