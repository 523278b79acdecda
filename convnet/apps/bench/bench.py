"""The benchmarks under one name: the NumPy engine against TensorFlow, measured in the same run.

The code lives in modules of one concept each: ``timing`` (clocks, memory,
load, a busy core, tables), ``ops`` (``convnet bench ops``: tasks 0-3
against TensorFlow), ``workload`` (a model's benchmark setting, data and
trainers), ``train`` (``convnet bench train``: an epoch of the NumPy
engines against Keras ``fit``), ``worker`` (the process each engine runs),
``layers`` (where a step's time goes), ``serve`` (the page's latency) and
``twin_agreement`` (NumPy models against their Keras twins). Beside them,
``frameworks`` (``python -m convnet.apps.bench.frameworks``) puts the NumPy
engine beside Keras, PyTorch and JAX, an epoch each, with ``epoch_worker``
(one engine's epoch in its own process), ``torch_twin`` and ``jax_twin``
(the spec in PyTorch and JAX, ``twin_layout`` their shared geometry) and
``flops`` (FLOPs per epoch, the machine's matrix-product rate). This module
gathers the names the command line and the tests use.
"""
from convnet.apps.bench.frameworks import DEFAULT_ENGINES as FRAMEWORK_DEFAULT_ENGINES
from convnet.apps.bench.frameworks import ENGINES as FRAMEWORK_ENGINES
from convnet.apps.bench.frameworks import (
    FRAMEWORK_HEADERS,
    ONE_CORE_ENGINES,
    bench_frameworks,
    model_heading,
)
from convnet.apps.bench.layers import (
    LAYER_HEADERS,
    layers_report,
    profile_train_step,
    time_layers,
)
from convnet.apps.bench.ops import OPS_HEADERS, TASK_FOLDER, bench_ops, task_conv_forward
from convnet.apps.bench.timing import (
    format_table,
    load_average_text,
    machine_info,
    median_time,
    one_core_busy,
    peak_added_bytes,
    peak_rss_bytes,
    setup_tensorflow,
)
from convnet.apps.bench.train import (
    DEFAULT_ENGINES,
    DEFAULT_STEPS,
    JUDGED_ENGINE,
    TRAIN_ENGINES,
    TRAIN_HEADERS,
    TRAIN_TARGETS,
    Engine,
    bench_train,
    check_engines,
    engine_rows,
    measure_engines,
    run_engine,
    verdict,
)
from convnet.apps.bench.worker import run_worker
from convnet.apps.bench.workload import (
    COURSE_BATCH,
    DEFAULT_BATCH,
    WARMUP_STEPS,
    KerasFitter,
    NumpyStepper,
    bench_data_size,
    bench_images,
    train_setting,
)

__all__ = [
    "COURSE_BATCH", "DEFAULT_BATCH", "DEFAULT_ENGINES", "DEFAULT_STEPS",
    "FRAMEWORK_DEFAULT_ENGINES", "FRAMEWORK_ENGINES", "FRAMEWORK_HEADERS", "JUDGED_ENGINE",
    "LAYER_HEADERS", "ONE_CORE_ENGINES", "OPS_HEADERS", "TASK_FOLDER", "TRAIN_ENGINES",
    "TRAIN_HEADERS", "TRAIN_TARGETS", "WARMUP_STEPS", "Engine", "KerasFitter", "NumpyStepper",
    "bench_data_size", "bench_frameworks", "bench_images", "bench_ops", "bench_train",
    "check_engines", "engine_rows", "format_table", "layers_report", "load_average_text",
    "machine_info", "measure_engines", "median_time", "model_heading", "one_core_busy",
    "peak_added_bytes", "peak_rss_bytes", "profile_train_step", "run_engine", "run_worker",
    "setup_tensorflow", "task_conv_forward", "time_layers", "train_setting", "verdict",
]
