"""Tests of convnet.apps.pictures.plots: training curves, checkpoint pictures, classic filters."""
import numpy as np
import pytest
from matplotlib.image import imread

from convnet.apps.pictures import plots
from convnet.apps.pictures.history import _history_figure


def _png_shape(path):
    """Return (height, width) in pixels of the PNG at ``path``."""
    return imread(path).shape[:2]


def _history(epochs=3):
    rng = np.random.default_rng(0)
    return {key: list(rng.random(epochs)) for key in plots.HISTORY_KEYS}


@pytest.mark.parametrize("epochs", [1, 4])
def test_plot_history_writes_png_of_expected_size(tmp_path, epochs):
    path = tmp_path / "sub" / "history.png"
    returned = plots.plot_history(_history(epochs), path)
    assert returned == path
    assert path.stat().st_size > 0
    width, height = plots.HISTORY_SIZE
    assert _png_shape(path) == (int(height * plots.DPI), int(width * plots.DPI))
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]


@pytest.mark.parametrize("first_epoch", [-1, 1.5, True, "0"])
def test_plot_history_rejects_bad_first_epoch(tmp_path, first_epoch):
    with pytest.raises(ValueError, match="first_epoch must be a non-negative integer"):
        plots.plot_history(_history(2), tmp_path / "h.png", first_epoch=first_epoch)


def test_plot_history_accepts_extra_keys(tmp_path):
    history = _history(2)
    history["lr"] = [1e-3, 1e-3]
    plots.plot_history(history, tmp_path / "h.png", first_epoch=0)
    assert (tmp_path / "h.png").stat().st_size > 0


@pytest.mark.parametrize("key", plots.HISTORY_KEYS)
def test_plot_history_rejects_missing_key(tmp_path, key):
    history = _history()
    del history[key]
    with pytest.raises(ValueError, match=f"missing the key.*'{key}'"):
        plots.plot_history(history, tmp_path / "h.png")
    assert not list(tmp_path.iterdir())


def test_plot_history_rejects_unequal_lengths(tmp_path):
    history = _history(3)
    history["val_loss"] = history["val_loss"][:2]
    with pytest.raises(ValueError, match="same length"):
        plots.plot_history(history, tmp_path / "h.png")


@pytest.mark.parametrize("history, message", [
    ({key: [] for key in plots.HISTORY_KEYS}, "no epochs"),
    ({key: [[1.0, 2.0]] for key in plots.HISTORY_KEYS}, "flat list"),
    ({**{key: [1.0] for key in plots.HISTORY_KEYS}, "loss": ["a"]}, "list of numbers"),
    ([1, 2, 3], "dict of lists"),
])
def test_plot_history_rejects_bad_values(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_history(history, tmp_path / "h.png")


# ---------------------------------------------------------------- confusion matrix
def _naive_confusion(y_true, y_pred, n_classes):
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[t, p] += 1
    return matrix


@pytest.mark.parametrize("m, n_classes", [(0, 10), (1, 10), (500, 10), (37, 3)])
def test_confusion_matrix_matches_naive_loop(m, n_classes):
    rng = np.random.default_rng(m)
    y_true = rng.integers(0, n_classes, m)
    y_pred = rng.integers(0, n_classes, m)
    matrix = plots.confusion_matrix(y_true, y_pred, n_classes=n_classes)
    np.testing.assert_array_equal(matrix, _naive_confusion(y_true, y_pred, n_classes))
    assert matrix.shape == (n_classes, n_classes)


@pytest.mark.parametrize("y_true, y_pred, n_classes, error, message", [
    ([0, 1], [0], 10, ValueError, "same length"),
    ([0, 10], [0, 1], 10, ValueError, "y_true labels must be in 0..9"),
    ([0, 1], [-1, 1], 10, ValueError, "y_pred labels must be in 0..9"),
    ([[0, 1]], [[0, 1]], 10, ValueError, "y_true must be a 1-D"),
    ([0.0, 1.0], [0, 1], 10, TypeError, "y_true must hold integer"),
    ([0], [0], 0, ValueError, "n_classes must be a positive integer"),
])
def test_confusion_matrix_rejects_bad_input(y_true, y_pred, n_classes, error, message):
    with pytest.raises(error, match=message):
        plots.confusion_matrix(y_true, y_pred, n_classes=n_classes)


# ---------------------------------------------------------------- convnet show
N_VALID = 40


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A tiny MNIST.npz in the curriculum layout, with random images."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("valid", N_VALID), ("test", 8)):
        arrays["X_" + split] = rng.random((n, 28, 28), dtype=np.float32) * 0.99
        arrays["Y_" + split] = rng.integers(0, 10, n)
    path = tmp_path_factory.mktemp("data") / "MNIST.npz"
    np.savez(path, **arrays)
    return path


def write_checkpoint(path, dataset="mnist", names=tuple("0123456789")):
    """A training checkpoint of an untrained LeNet-5, as ``convnet train`` writes it."""
    from convnet.nn.lenet5 import LeNet5
    from convnet.nn.optim import Adam
    from convnet.training import trainer
    model = LeNet5(seed=0)
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": dataset, "train_size": 8}
    history = {key: [2.3] for key in trainer.HISTORY_KEYS}
    history["epoch_seconds"] = []
    trainer.save_checkpoint(path, model, Adam(model.parameters()), 0, settings, history, names)
    return path


def load_model(path):
    from convnet.training import trainer
    return trainer.load_model(path)[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("run") / "c.npz")


def _show(checkpoint, data, out, *extra):
    from convnet.apps.cli.cli import main
    return main(["show", "--checkpoint", str(checkpoint), "--data", str(data),
                 "--out", str(out), *extra])


def _inches_to_pixels(size):
    width, height = size
    return round(height * plots.DPI), round(width * plots.DPI)


@pytest.mark.parametrize("index", [0, N_VALID - 1])
def test_show_writes_the_four_pictures(tmp_path, capsys, checkpoint, small_dataset, index):
    assert _show(checkpoint, small_dataset, tmp_path, "--index", str(index)) == 0
    printed = capsys.readouterr().out.split()
    names = ["filters.png", f"feature_maps_{index}.png", "predictions.png",
             "confusion_matrix.png"]
    assert printed == [str(tmp_path / name) for name in names]
    images = np.load(small_dataset)["X_valid"]
    maps = [(name, a[0]) for name, a in load_model(checkpoint).feature_maps(images[:1])]
    expected = {
        "filters.png": plots.FILTERS_SIZE,
        f"feature_maps_{index}.png": plots.feature_maps_size(maps),
        "predictions.png": plots.PREDICTIONS_SIZE,
        "confusion_matrix.png": plots.CONFUSION_SIZE,
    }
    for name, size in expected.items():
        path = tmp_path / name
        assert path.stat().st_size > 0
        assert _png_shape(path) == _inches_to_pixels(size), name


def test_show_refuses_a_dataset_other_than_the_checkpoints(tmp_path, capsys, small_dataset):
    fashion = write_checkpoint(tmp_path / "fashion.npz", "fashion-mnist",
                               ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                "Shirt", "Sneaker", "Bag", "Ankle boot"])
    assert _show(fashion, small_dataset, tmp_path / "out", "--dataset", "mnist") == 2
    error = capsys.readouterr().err
    assert error == (f"convnet: error: checkpoint {fashion} was trained on fashion-mnist, not "
                     "mnist: leave out --dataset (the checkpoint's own is used) or pass a "
                     "checkpoint trained on mnist\n")
    assert not (tmp_path / "out").exists()


def test_show_rejects_index_out_of_range(tmp_path, capsys, checkpoint, small_dataset):
    assert _show(checkpoint, small_dataset, tmp_path, "--index", str(N_VALID)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("convnet: error: --index must be between 0 and "
                            f"{N_VALID - 1}")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content", [None, b"not a zip file"])
def test_show_rejects_bad_checkpoint(tmp_path, capsys, small_dataset, content):
    bad = tmp_path / "bad.npz"
    if content is not None:
        bad.write_bytes(content)
    assert _show(bad, small_dataset, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("convnet: error: ") and "bad.npz" in error
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- classic filters
def _naive_same_correlation(image, kernel):
    """3x3 'same' cross-correlation with zero padding, one pixel at a time."""
    h, w = image.shape
    padded = np.zeros((h + 2, w + 2))
    padded[1:-1, 1:-1] = image
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            total = 0.0
            for di in range(3):
                for dj in range(3):
                    total += kernel[di, dj] * padded[i + di, j + dj]
            out[i, j] = total
    return out


@pytest.fixture(scope="module")
def photo_crop():
    image = plots.load_grayscale(plots.sample_photo_path())
    return image[100:140, 200:250]


def test_sample_photo_is_a_grayscale_picture():
    image = plots.load_grayscale(plots.sample_photo_path())
    assert image.ndim == 2 and min(image.shape) > 100
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05


@pytest.mark.parametrize("name", list(plots.CLASSIC_KERNELS))
def test_classic_filters_match_naive_loop(photo_crop, name):
    filtered = plots.apply_classic_filters(photo_crop)
    assert list(filtered) == list(plots.CLASSIC_KERNELS)
    expected = _naive_same_correlation(photo_crop, plots.CLASSIC_KERNELS[name])
    np.testing.assert_allclose(filtered[name], expected, rtol=1e-12, atol=1e-12)


def test_sobel_x_is_right_minus_left():
    # A step from dark (left) to bright (right): positive on the step (1 + 2 + 1),
    # and negative at the right border, where the zero padding is a step down.
    image = np.zeros((5, 6))
    image[:, 3:] = 1.0
    sobel_x = plots.apply_classic_filters(image)["sobel_x"]
    np.testing.assert_array_equal(sobel_x[2], [0, 0, 4, 4, 0, -4])


def test_filters_command_writes_png(tmp_path, capsys):
    from convnet.apps.cli.cli import main
    assert main(["filters", "--out", str(tmp_path)]) == 0
    path = tmp_path / "classic_filters.png"
    assert capsys.readouterr().out.split() == [str(path)]
    assert path.stat().st_size > 0
    assert _png_shape(path) == _inches_to_pixels(plots.CLASSIC_SIZE)


def test_filters_command_accepts_an_image(tmp_path, capsys):
    from PIL import Image

    from convnet.apps.cli.cli import main
    source = tmp_path / "gradient.png"
    Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (30, 1))).save(source)
    assert main(["filters", "--image", str(source), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "classic_filters.png").stat().st_size > 0


@pytest.mark.parametrize("content, message", [(None, "not found"),
                                              (b"plain text", "cannot read image")])
def test_filters_command_rejects_bad_image(tmp_path, capsys, content, message):
    from convnet.apps.cli.cli import main
    source = tmp_path / "photo.jpg"
    if content is not None:
        source.write_bytes(content)
    assert main(["filters", "--image", str(source), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error and "photo.jpg" in error
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- drawing functions on made-up arrays
def test_draw_first_layer_filters(tmp_path):
    kernels = np.random.default_rng(0).normal(size=(5, 5, 1, 6))
    path = plots.draw_first_layer_filters(kernels, tmp_path / "f.png")
    assert _png_shape(path) == _inches_to_pixels(plots.FILTERS_SIZE)
    with pytest.raises(ValueError, match=r"kernels must have shape \(kh, kw, 1, c_new\)"):
        plots.draw_first_layer_filters(np.zeros((5, 5, 3, 6)), tmp_path / "g.png")


def test_draw_feature_maps_size_follows_the_layers(tmp_path):
    rng = np.random.default_rng(0)
    maps = [("input", rng.random((28, 28, 1))), ("conv", rng.normal(size=(28, 28, 6))),
            ("flat", rng.random(400)), ("logits", rng.normal(size=10))]
    path = plots.draw_feature_maps(maps, tmp_path / "m.png")
    width, height = plots.feature_maps_size(maps)
    assert _png_shape(path) == _inches_to_pixels((width, height))
    taller = plots.feature_maps_size(maps + [("more", rng.random((5, 5, 16)))])
    assert taller[0] == width and taller[1] > height


@pytest.mark.parametrize("maps, message", [
    ([], "at least one"),
    ([("conv", np.zeros((4, 4, 0)))], "at least one value"),
    ([("odd", np.zeros((2, 3)))], "'odd' must have shape"),
])
def test_draw_feature_maps_rejects_bad_maps(tmp_path, maps, message):
    with pytest.raises(ValueError, match=message):
        plots.draw_feature_maps(maps, tmp_path / "m.png")


def test_draw_predictions_rejects_bad_input(tmp_path):
    images = np.zeros((26, 28, 28))
    labels = np.zeros(26, dtype=int)
    with pytest.raises(ValueError, match="n <= 25"):
        plots.draw_predictions(images, labels, labels, tmp_path / "p.png")
    with pytest.raises(ValueError, match="must have 3 labels"):
        plots.draw_predictions(images[:3], labels[:2], labels[:3], tmp_path / "p.png")


def test_draw_confusion_matrix_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"matrix must have shape \(10, 10\)"):
        plots.draw_confusion_matrix(np.zeros((9, 9), dtype=int), tmp_path / "c.png")


def test_apply_classic_filters_rejects_colour_image():
    with pytest.raises(ValueError, match="image must be a 2-D grayscale array"):
        plots.apply_classic_filters(np.zeros((8, 8, 3)))


def test_drawing_never_loads_pyplot(tmp_path):
    # pyplot would pick a GUI backend and keep global figures; the Agg canvas does neither.
    import subprocess
    import sys
    code = ("import sys; from convnet.apps.pictures import plots; "
            "history = {key: [1.0, 0.5] for key in plots.HISTORY_KEYS}; "
            f"plots.plot_history(history, {str(tmp_path / 'h.png')!r}); "
            "print('matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------- pictures of one's own digit
def _digit_file(path, size=(60, 80)):
    from PIL import Image, ImageDraw
    image = Image.new("L", size, 230)
    draw = ImageDraw.Draw(image)
    draw.line([(15, 15), (45, 15), (25, 70)], fill=10, width=6)
    image.save(path)
    return path


def test_predict_show_draws_what_the_network_saw(tmp_path, capsys, checkpoint):
    from convnet.apps.cli.cli import main
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _digit_file(tmp_path / "a" / "7.png"), _digit_file(tmp_path / "b" / "7.png")
    out = tmp_path / "pictures"
    assert main(["predict", str(first), str(second), "--checkpoint", str(checkpoint),
                 "--show", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[2:] == [str(out / "input_7.png"), str(out / "input_7_2.png")]
    for name in ("input_7.png", "input_7_2.png"):
        assert _png_shape(out / name) == _inches_to_pixels(plots.INPUT_SIZE)


def test_predict_without_show_draws_nothing(tmp_path, capsys, checkpoint):
    from convnet.apps.cli.cli import main
    digit = _digit_file(tmp_path / "7.png")
    assert main(["predict", str(digit), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "pictures")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert not (tmp_path / "pictures").exists()


@pytest.mark.parametrize("paths, names", [
    (["x/1.png"], ["input_1.png"]),
    (["a/1.png", "b/1.jpg", "c/2.png"], ["input_1.png", "input_1_2.png", "input_2.png"]),
])
def test_input_picture_names_are_unique(paths, names):
    assert plots.input_picture_names(paths) == names


@pytest.mark.parametrize("image, probabilities, message", [
    (np.zeros((28, 28, 2)), np.full(10, 0.1), r"image must have shape \(h, w\)"),
    (np.zeros((28, 28)), np.full(9, 0.1), r"probabilities must have shape \(10,\)"),
])
def test_draw_input_and_probabilities_rejects_bad_input(tmp_path, image, probabilities,
                                                        message):
    with pytest.raises(ValueError, match=message):
        plots.draw_input_and_probabilities(image, probabilities, tmp_path / "i.png")


def test_show_image_draws_the_maps_of_ones_own_digit(tmp_path, capsys, checkpoint):
    from convnet.apps.cli.cli import main
    from convnet.data.images import load_digit_image
    digit = _digit_file(tmp_path / "mine.png")
    out = tmp_path / "pictures"
    assert main(["show", "--checkpoint", str(checkpoint), "--image", str(digit),
                 "--out", str(out), "--data", str(tmp_path / "no-such-data.npz")]) == 0
    assert capsys.readouterr().out.split() == [str(out / "feature_maps_mine.png")]
    image = load_digit_image(digit)
    maps = [(name, a[0]) for name, a in load_model(checkpoint).feature_maps(image[None])]
    assert _png_shape(out / "feature_maps_mine.png") == \
        _inches_to_pixels(plots.feature_maps_size(maps))


def test_show_mistakes_adds_the_first_25_mistakes(tmp_path, capsys, checkpoint, small_dataset):
    assert _show(checkpoint, small_dataset, tmp_path, "--mistakes") == 0
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(tmp_path / "mistakes.png")
    assert len(printed) == 5
    assert _png_shape(tmp_path / "mistakes.png") == _inches_to_pixels(plots.PREDICTIONS_SIZE)


# ---------------------------------------------------------------- colour limits and axes
def test_filter_colour_limit_ignores_the_padding_frame():
    rng = np.random.default_rng(0)
    response = rng.normal(size=(40, 30))
    inside = np.abs(response[1:-1, 1:-1])
    response[0, :] = response[-1, :] = response[:, 0] = response[:, -1] = 50.0
    assert plots.filter_colour_limit(response) == pytest.approx(np.percentile(inside, 99))
    assert plots.filter_colour_limit(response, margin=0) > 40   # the frame would set it
    assert plots.filter_colour_limit(np.zeros((5, 5))) == 1.0
    assert plots.filter_colour_limit(np.ones((2, 2)), margin=1) == 1.0


def test_laplacian_of_a_light_photo_is_scaled_by_its_inside():
    """A digit photographed on light paper: against the zero padding the paper's edge
    is the strongest 'edge' of all, and must not set the colour scale."""
    image = np.full((60, 50), 0.9)
    image[15:45, 22:28] = 0.1
    edges = plots.apply_classic_filters(image)["edges"]
    limit = plots.filter_colour_limit(edges)
    # The strongest response inside is at the stroke's side: 8 * 0.1 - (3 * 0.9 + 5 * 0.1).
    assert limit == pytest.approx(2.4)
    assert np.percentile(np.abs(edges), 99) == pytest.approx(2.7)   # the frame: 8 * 0.9 - 5 * 0.9


@pytest.mark.parametrize("response, margin, error, message", [
    (np.zeros((3, 3, 1)), 1, ValueError, "response must be a 2-D array"),
    (np.zeros((3, 3)), -1, ValueError, "margin must be a non-negative integer"),
])
def test_filter_colour_limit_rejects_bad_input(response, margin, error, message):
    with pytest.raises(error, match=message):
        plots.filter_colour_limit(response, margin=margin)


@pytest.mark.parametrize("first_epoch, epochs", [(1, 1), (0, 2), (1, 5)])
def test_history_x_axis_starts_at_epoch_0(first_epoch, epochs):
    curves = {key: np.linspace(1, 0.5, epochs) for key in plots.HISTORY_KEYS}
    numbers = np.arange(first_epoch, first_epoch + epochs)
    figure = _history_figure(curves, numbers)
    for axes in figure.axes:
        low, high = axes.get_xlim()
        assert low <= 0 < high and high >= numbers[-1]
        ticks = [t for t in axes.get_xticks() if low <= t <= high]
        assert ticks[0] == 0 and all(float(t).is_integer() for t in ticks)
        plotted = axes.get_lines()[0].get_xdata()
        np.testing.assert_array_equal(plotted, numbers)
