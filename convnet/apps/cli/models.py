"""The commands that use a trained model: ``evaluate``, ``predict``, ``summary``, ``show``,
``filters`` (the hand-made kernels need none) and ``serve``."""
import sys
from pathlib import Path

import numpy as np

from convnet import api
from convnet.apps.cli.options import (
    DEFAULT_CHECKPOINT,
    Command,
    add_dataset_options,
    non_negative_int,
    note,
    positive_int,
)
from convnet.errors import BadCheckpointError, BadOptionError
from convnet.training import provenance, trainer


def _add_checkpoint_option(parser):
    """``--checkpoint``, the trained model that evaluate, predict and serve read."""
    parser.add_argument("--checkpoint", metavar="PATH", default=DEFAULT_CHECKPOINT,
                        help="checkpoint .npz written by `convnet train` (or a LeNet-5 "
                             f"weights.npz) (default: {DEFAULT_CHECKPOINT})")


def configure_evaluate(parser):
    _add_checkpoint_option(parser)
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test",
                        help="which split to measure (default: test)")
    add_dataset_options(parser, default=None)


PICTURES_HELP = ("folder of the pictures (default: a folder named after the checkpoint, "
                 "beside it: runs/lenet5-numpy/checkpoint-pictures for the default checkpoint)")


def configure_predict(parser):
    parser.add_argument("images", metavar="IMAGE", nargs="+",
                        help="PNG or JPEG files, any size, prepared for the model's input: for "
                             "a grey model one digit each, inverted when dark on light, scaled "
                             "and centred as in MNIST; for a colour model the largest centred "
                             "part of the model's aspect ratio, resized to its size")
    _add_checkpoint_option(parser)
    parser.add_argument("--top", type=positive_int, default=3,
                        help="how many of the most likely classes to show (default: 3)")
    parser.add_argument("--show", action="store_true",
                        help="also draw, for each image, the input the network saw and its "
                             "probabilities (PNG files in --out)")
    parser.add_argument("--out", metavar="DIR", default=None, help=PICTURES_HELP)


def run_predict(args):
    predict_cli(args)


PREDICT = Command("predict", configure_predict, run_predict,
                  help="classify digit images with a checkpoint")


# ---------------------------------------------------------------- pictures
def configure_summary(parser):
    # The fully connected 784-512-512-10 network is always shown beside LeNet-5.
    parser.add_argument("--alexnet", action="store_true",
                        help="also show AlexNet (2012), reviewed in 0x07-cnn/6-alexnet.md")
    parser.add_argument("--model", metavar="NAME", default=None,
                        help="show only this network's Keras-style table: a zoo name (lenet5, "
                             "lenet5-classic, mlp, mnist-cnn, cifar-cnn, happy-model, signs-cnn) "
                             "or a spec.json")
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="show only the Keras-style table of this checkpoint's model, and "
                             "what it was trained on")


def run_summary(args):
    if args.checkpoint is not None:
        if args.model is not None:
            raise BadOptionError("give --model or --checkpoint, not both")
        summary_checkpoint_cli(args)
        return
    if args.model is not None:
        from convnet.nn import sequential
        spec = trainer.model_spec(args.model)
        try:
            model = sequential.Sequential(spec)
        except ValueError as error:   # a layer that does not fit its input
            raise BadOptionError(f"--model: {error}") from None
        print(sequential.summary_text(model.summary()))
        return
    from convnet.nn import architectures
    print(architectures.summary_report(alexnet=args.alexnet))


SUMMARY = Command("summary", configure_summary, run_summary,
                  help="LeNet-5's layers, shapes and parameter counts")


def configure_show(parser):
    parser.add_argument("--checkpoint", metavar="PATH", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--index", type=non_negative_int, default=0,
                        help="validation image whose feature maps are drawn, also the first "
                             "of the 25 predictions shown (default: 0)")
    parser.add_argument("--out", metavar="DIR", default=None, help=PICTURES_HELP)
    parser.add_argument("--image", metavar="FILE", default=None,
                        help="draw only the feature maps of this picture (PNG or JPEG, "
                             "prepared for the model's input as `convnet predict` does)")
    parser.add_argument("--mistakes", action="store_true",
                        help="also draw the first 25 mistakes on the validation split")
    add_dataset_options(parser, default=None)


def run_show(args):
    show_cli(args)


SHOW = Command("show", configure_show, run_show,
               help="draw filters, feature maps and predictions of a checkpoint")


def configure_filters(parser):
    parser.add_argument("--image", metavar="PATH", default=None,
                        help="photograph to filter (default: a sample photo shipped with matplotlib)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures")


def run_filters(args):
    from convnet.apps.pictures import plots
    print(plots.draw_classic_filters_of(args.image, args.out))


FILTERS = Command("filters", configure_filters, run_filters,
                  help="apply classic hand-made kernels to a photograph")


def _load_checkpoint_model(args):
    """The model of ``args.checkpoint``, the dataset and data it is used on, and its names.

    The dataset is the recorded one (checked against ``--dataset``) and the
    data ``--data``, else where the checkpoint says it was read from
    (``convnet.training.provenance``).
    """
    model, _, names = trainer.load_model(args.checkpoint)
    dataset, data, _ = provenance.data_to_use(args.checkpoint, args.dataset, args.data, note)
    return model, dataset, data, names


def run_evaluate(args):
    """``convnet evaluate``: print the loss and accuracy of a checkpoint on a split."""
    # Resolved here first, so that an assumed dataset is said as a note of the command.
    dataset, data, _ = provenance.data_to_use(args.checkpoint, args.dataset, args.data, note)
    measured = api.evaluate(args.checkpoint, split=args.split, dataset=dataset, data=data)
    print(f"{args.checkpoint} on the {measured.dataset} {args.split} split ({measured.images} "
          f"images): accuracy {measured.accuracy:.4f}, loss {measured.loss:.4f}")


EVALUATE = Command("evaluate", configure_evaluate, run_evaluate,
                   help="accuracy and loss of a checkpoint on a split")


def pictures_folder(checkpoint, out=None):
    """Where the pictures of ``checkpoint`` go: ``out`` if given, else beside the checkpoint.

    The folder is named after the checkpoint (``runs/x/checkpoint.npz`` ->
    ``runs/x/checkpoint-pictures``), so the pictures of two checkpoints of
    one run folder (``checkpoint.npz`` and ``best.npz``) never overwrite
    each other; a checkpoint that is a folder gets ``pictures`` inside it.
    """
    if out is not None:
        return Path(out)
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return checkpoint / "pictures"
    return checkpoint.with_name(f"{checkpoint.stem}-pictures")


def predict_cli(args):
    """Run ``convnet predict``: print the class and top probabilities for each image file.

    ``args`` has images (paths), checkpoint and top (how many probabilities).
    Each picture is prepared for the model's input shape
    (``convnet.data.images.prepare_image``: a digit as MNIST prepares them
    for a grey model, the centred crop resized for a colour model), and the
    rule is said once on stderr. With ``show`` true it also draws each
    prepared input and its probabilities into the folder ``out`` (default:
    beside the checkpoint, see :func:`pictures_folder`) and prints the PNG
    paths.
    """
    from convnet.data import class_names
    from convnet.data.images import preparation_rule, prepare_image
    model, _, stored = trainer.load_model(args.checkpoint)
    dataset, _, _ = provenance.data_to_use(args.checkpoint, note=note)
    names = class_names(dataset, stored=stored)
    rule = preparation_rule(model.input_shape)
    images = np.stack([prepare_image(path, model.input_shape) for path in args.images])
    probabilities = model.predict_proba(images)
    if probabilities.shape[1] == 1:
        probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
    note(f"each picture was prepared as the model's input: {rule}")
    top = min(args.top, probabilities.shape[1])
    label = (lambda k: str(k)) if dataset == "mnist" else (lambda k: names[k])
    for path, probs in zip(args.images, probabilities):
        ranked = np.argsort(probs)[::-1][:top]
        shown = ", ".join(f"{label(k)}: {probs[k]:.4f}" for k in ranked)
        print(f"{path}: {label(ranked[0])} ({shown})")
    if getattr(args, "show", False):
        from convnet.apps.pictures.plots import draw_input_and_probabilities, input_picture_names
        out = pictures_folder(args.checkpoint, args.out)
        for path, name, image, probs in zip(args.images, input_picture_names(args.images),
                                            images, probabilities):
            print(draw_input_and_probabilities(image, probs, out / name,
                                               names=class_names(dataset, stored=stored,
                                                                 short=True),
                                               title=f"What the network saw: {path}"))


def show_cli(args):
    """Run ``convnet show``: draw the pictures of a checkpoint and print their paths.

    See ``plots.draw_checkpoint_pictures``; with ``args.image`` (a picture
    file) only that image's feature maps are drawn, prepared for the model's
    input as ``convnet predict`` prepares it. The pictures go to ``args.out``,
    by default beside the checkpoint (:func:`pictures_folder`).
    """
    from convnet.apps.pictures import plots
    from convnet.data import class_names
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file() and not checkpoint.is_dir():
        raise BadCheckpointError(f"checkpoint {checkpoint} not found (train one with "
                                 "`convnet train`, or pass --checkpoint PATH)")
    model, dataset, data, stored = _load_checkpoint_model(args)
    names = class_names(dataset, stored=stored, short=True)
    out = pictures_folder(checkpoint, args.out)
    if getattr(args, "image", None) is not None:
        print(plots.draw_image_maps(model, Path(args.image), out, names))
        return
    X_valid, Y_valid = api.load_split(model, dataset, "valid", data)
    for path in plots.draw_checkpoint_pictures(model, str(checkpoint), X_valid, Y_valid,
                                               args.index, out, names,
                                               mistakes=getattr(args, "mistakes", False)):
        print(path)


def summary_checkpoint_cli(args):
    """Run ``convnet summary --checkpoint PATH``: the model's table and what it learnt from."""
    from convnet.data import class_names
    from convnet.nn import sequential
    model, _, stored = trainer.load_model(args.checkpoint)
    origin = provenance.read_origin(args.checkpoint)
    print(sequential.summary_text(model.summary()))
    if origin.data_path is not None:
        print(f"Data: read from {origin.data_path}")
    if origin.dataset is None:
        print("Dataset: not recorded (a LeNet-5 weights file)")
        return
    names = class_names(origin.dataset, stored=stored)
    beside = ("" if origin.recorded_in == "checkpoint"
              else f"; says the {provenance.RUN_JSON} beside it")
    print(f"Dataset: {origin.dataset} ({len(names)} classes: {', '.join(names)}{beside})")


# ---------------------------------------------------------------- serve
def configure_serve(parser):
    parser.description = (
        "Serve a page that shows the network at work: draw a digit (grey models), pick an "
        "image of the dataset or upload a picture, and watch every layer; inspect the "
        "arithmetic of a convolution, back-propagate, browse the mistakes.")
    _add_checkpoint_option(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=positive_int, default=8000, help="default 8000")
    add_dataset_options(parser, default=None)


def run_serve(args):
    from convnet.apps.page import serve
    if args.port > 65535:
        raise BadOptionError(f"--port must be at most 65535, received {args.port}")
    view = serve.NetworkView.from_checkpoint(args.checkpoint)
    dataset, data, _ = provenance.data_to_use(args.checkpoint, args.dataset, args.data, note)
    if view.dataset is None and dataset != "mnist":
        from convnet.data import class_names
        view.class_names = class_names(dataset, short=True)
    warning = serve.host_warning(args.host)
    app = serve.build_app(view, browser=serve.browser_for(view, dataset, data),
                          checkpoint=str(args.checkpoint),
                          allowed_hosts=None if warning else serve.LOOPBACK_NAMES)
    # Bound first: a busy port or a foreign host is one error line, before "serving".
    sock = serve.listening_socket(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {args.checkpoint} on http://{host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve.run(app, args.host, args.port, sock=sock)


SERVE = Command("serve", configure_serve, run_serve,
                help="a local web page that shows the network at work")
