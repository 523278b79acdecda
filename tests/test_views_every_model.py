"""Every view of every zoo model: ``show``, ``predict`` and ``evaluate``, the pictures and the page.

Each model of the zoo is trained once (a module fixture, one epoch on a few
hundred images through ``convnet.train``): the grey ones on a slice of
MNIST, the colour ones on shapes drawn by ``colour_data`` and saved in the
layout ``--data`` reads. Then every command that uses a model runs on each,
and the page's views (``NetworkView``, the payloads, the server) are
checked on the colour, sigmoid and dense-only networks the page used to
refuse.
"""
import base64
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from colour_data import shapes_npz
from matplotlib.image import imread

import convnet
from convnet import api
from convnet.apps.cli.cli import main
from convnet.apps.page import serve
from convnet.apps.page.views import backprop_payload, predict_payload
from convnet.apps.pictures import plots
from convnet.data import class_names, load_dataset
from convnet.data.cifar10 import CIFAR10_CLASSES
from convnet.data.images import load_digit_image, preparation_rule, prepare_image
from convnet.errors import BadImageError
from convnet.nn.ops import conv_forward
from convnet.training import trainer

# Each zoo model and the dataset it learns here.
ZOO = {"lenet5": "mnist", "lenet5-classic": "mnist", "mlp": "mnist", "mnist-cnn": "mnist",
       "cifar-cnn": "cifar10", "happy-model": "happy", "signs-cnn": "signs"}
COLOUR_DATA = {"cifar10": (CIFAR10_CLASSES, 32), "happy": (("not happy", "happy"), 64),
               "signs": (tuple("012345"), 64)}


@pytest.fixture(scope="module")
def datasets(mnist_slice, tmp_path_factory):
    """Path of each dataset's file: a slice of MNIST, and shapes for the colour datasets."""
    folder = tmp_path_factory.mktemp("data")
    paths = {"mnist": mnist_slice(folder / "MNIST.npz", 300, 60, 60)}
    for name, (classes, size) in COLOUR_DATA.items():
        counts = (100, 30, 30) if size == 64 else (200, 40, 40)
        paths[name] = shapes_npz(folder / f"{name}.npz", classes, size, counts)[0]
    return paths


@pytest.fixture(scope="module")
def trained(datasets, tmp_path_factory):
    """The checkpoint of each zoo model after one epoch, by model name."""
    runs = tmp_path_factory.mktemp("runs")
    checkpoints = {}
    for model, dataset in ZOO.items():
        config = convnet.TrainConfig(model=model, dataset=dataset, data=str(datasets[dataset]),
                                     epochs=1, out=str(runs / model), processes=1)
        checkpoints[model] = Path(convnet.train(config).files["checkpoint"])
    return checkpoints


def _png_shape(path):
    return imread(path).shape[:2]


def _pixels(size):
    width, height = size
    return round(height * plots.DPI), round(width * plots.DPI)


def _valid(datasets, model):
    """Validation images and labels of the model's dataset, as ``load_dataset`` gives them."""
    return load_dataset(ZOO[model], datasets[ZOO[model]])[2:4]


def _picture(tmp_path, colour):
    """A picture file to predict: a dark 7 on light paper, or a colour photo-like image."""
    from PIL import Image, ImageDraw
    if colour:
        rng = np.random.default_rng(3)
        pixels = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
        pixels[10:35, 30:50] = (250, 40, 40)
        path = tmp_path / "photo.png"
        Image.fromarray(pixels).save(path)
        return path
    image = Image.new("L", (60, 80), 230)
    ImageDraw.Draw(image).line([(15, 15), (45, 15), (25, 70)], fill=10, width=6)
    path = tmp_path / "seven.png"
    image.save(path)
    return path


# ---------------------------------------------------------------- the commands on every model
@pytest.mark.parametrize("model", list(ZOO))
def test_show_draws_every_picture_beside_the_checkpoint(model, trained, datasets, capsys):
    checkpoint = trained[model]
    assert main(["show", "--checkpoint", str(checkpoint), "--data", str(datasets[ZOO[model]]),
                 "--index", "3"]) == 0
    out = checkpoint.parent / "checkpoint-pictures"
    names = (["filters.png"] if model != "mlp" else []) + \
        ["feature_maps_3.png", "predictions.png", "confusion_matrix.png"]
    assert capsys.readouterr().out.split() == [str(out / name) for name in names]
    loaded, dataset, stored = trainer.load_model(checkpoint)
    labels = class_names(dataset, stored=stored, short=True)
    X_valid, _ = _valid(datasets, model)
    maps = plots.model_maps(loaded, X_valid[3])
    assert _png_shape(out / "feature_maps_3.png") == \
        _pixels(plots.feature_maps_size(maps, len(labels)))
    assert maps[-1][1].shape == (len(labels),)
    if model != "mlp":
        kernels = plots.first_conv_kernels(loaded)[1]
        assert _png_shape(out / "filters.png") == _pixels(plots.filters_size(kernels.shape[3]))


@pytest.mark.parametrize("model", list(ZOO))
def test_predict_prepares_each_picture_for_the_model(model, trained, tmp_path, capsys):
    checkpoint = trained[model]
    loaded, dataset, stored = trainer.load_model(checkpoint)
    colour = loaded.input_shape[2] == 3
    picture = _picture(tmp_path, colour)
    assert main(["predict", str(picture), "--checkpoint", str(checkpoint), "--top", "2",
                 "--show"]) == 0
    captured = capsys.readouterr()
    image = prepare_image(picture, loaded.input_shape)
    assert image.shape == loaded.input_shape
    probabilities = plots.class_probabilities(loaded, image[None])[0]
    label = (lambda k: str(k)) if dataset == "mnist" else (lambda k: stored[k])
    best, second = np.argsort(probabilities)[::-1][:2]
    out = checkpoint.parent / "checkpoint-pictures"
    line = (f"{picture}: {label(best)} ({label(best)}: {probabilities[best]:.4f}, "
            f"{label(second)}: {probabilities[second]:.4f})")
    assert captured.out.splitlines() == [line, str(out / f"input_{picture.stem}.png")]
    assert captured.err == ("each picture was prepared as the model's input: "
                            f"{preparation_rule(loaded.input_shape)}\n")
    assert _png_shape(out / f"input_{picture.stem}.png") == _pixels(plots.INPUT_SIZE)


@pytest.mark.parametrize("model", list(ZOO))
def test_evaluate_measures_every_model(model, trained, datasets, capsys):
    checkpoint = trained[model]
    data = str(datasets[ZOO[model]])
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", data,
                 "--split", "valid"]) == 0
    measured = api.evaluate(checkpoint, split="valid", data=data)
    assert capsys.readouterr().out == (
        f"{checkpoint} on the {ZOO[model]} valid split ({measured.images} images): accuracy "
        f"{measured.accuracy:.4f}, loss {measured.loss:.4f}\n")


def test_show_image_draws_a_colour_pictures_maps(trained, tmp_path, capsys):
    checkpoint = trained["signs-cnn"]
    picture = _picture(tmp_path, colour=True)
    assert main(["show", "--checkpoint", str(checkpoint), "--image", str(picture),
                 "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "out" / "feature_maps_photo.png")]
    model = trainer.load_model(checkpoint)[0]
    maps = plots.model_maps(model, prepare_image(picture, model.input_shape))
    assert maps[0][1].shape == (64, 64, 3)
    assert _png_shape(tmp_path / "out" / "feature_maps_photo.png") == \
        _pixels(plots.feature_maps_size(maps, 6))


def test_two_checkpoints_of_one_run_keep_their_pictures_apart(trained, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.npz", "best.npz"):
        shutil.copy(trained["lenet5"], run / name)
    picture = _picture(tmp_path, colour=False)
    for name in ("checkpoint.npz", "best.npz"):
        assert main(["predict", str(picture), "--checkpoint", str(run / name), "--show"]) == 0
    assert capsys.readouterr().out.splitlines()[1::2] == [
        str(run / "checkpoint-pictures" / "input_seven.png"),
        str(run / "best-pictures" / "input_seven.png")]


# ---------------------------------------------------------------- preparing pictures
def test_a_dataset_image_saved_as_png_comes_back_exactly(datasets, tmp_path):
    from PIL import Image
    with np.load(datasets["cifar10"]) as arrays:
        image = arrays["X_valid"][5]
    Image.fromarray(image).save(tmp_path / "five.png")
    prepared = prepare_image(tmp_path / "five.png", (32, 32, 3))
    np.testing.assert_array_equal(prepared, load_dataset("cifar10", datasets["cifar10"])[2][5])


def test_a_wide_picture_keeps_its_centre_and_a_grey_one_fills_three_channels(tmp_path):
    from PIL import Image
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 60:] = (0, 0, 255)
    wide[:, 20:60] = (0, 255, 0)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    prepared = prepare_image(tmp_path / "wide.png", (16, 16, 3))
    np.testing.assert_allclose(prepared[:, 2:-2], np.broadcast_to([0, 1, 0], (16, 12, 3)),
                               atol=1e-6)
    Image.fromarray(np.full((10, 10), 200, np.uint8)).save(tmp_path / "grey.png")
    grey = prepare_image(tmp_path / "grey.png", (10, 10, 3))
    np.testing.assert_array_equal(grey, np.full((10, 10, 3), np.float32(200) / np.float32(255)))


def test_a_grey_model_of_another_size_gets_the_digit_recipe_in_its_field(tmp_path):
    picture = _picture(tmp_path, colour=False)
    np.testing.assert_array_equal(prepare_image(picture, (28, 28, 1))[:, :, 0],
                                  load_digit_image(picture))
    image = prepare_image(picture, (20, 24, 1))[:, :, 0]
    assert image.shape == (20, 24) and image.max() < 1
    rows, cols = np.nonzero(image > 0)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 14   # 5/7 of 20
    centre = [(np.indices(image.shape)[axis] * image).sum() / image.sum() for axis in (0, 1)]
    np.testing.assert_allclose(centre, [10, 12], atol=0.6)
    assert "20x24 grey" in preparation_rule((20, 24, 1))


def test_pictures_are_prepared_for_one_or_three_channels_only(tmp_path):
    with pytest.raises(BadImageError, match=r"grey \(1 channel\) or colour \(3 channels\) "
                                            r"images; this model takes 2 channels"):
        prepare_image(_picture(tmp_path, colour=True), (8, 8, 2))


# ---------------------------------------------------------------- the pictures' layouts
def test_channels_wrap_sixteen_to_a_line(tmp_path):
    rng = np.random.default_rng(0)
    one = [("conv", rng.normal(size=(8, 8, 16)))]
    three = [("conv", rng.normal(size=(8, 8, 40)))]
    assert plots.feature_maps_size(three)[1] == pytest.approx(
        plots.feature_maps_size(one)[1] + 2 * 0.85)
    path = plots.draw_feature_maps(three + [("flat", rng.random(5))], tmp_path / "m.png")
    assert _png_shape(path) == _pixels(plots.feature_maps_size(three + [("flat", rng.random(5))]))


def test_colour_filters_are_colour_patches_eight_to_a_row(tmp_path):
    kernels = np.random.default_rng(1).normal(size=(3, 3, 3, 20))
    path = plots.draw_kernels(kernels, tmp_path / "f.png")
    assert _png_shape(path) == _pixels(plots.filters_size(20))
    assert plots.filters_size(20)[1] > plots.filters_size(8)[1] == plots.FILTERS_SIZE[1]
    patches = plots.colour_patches(np.zeros((3, 3, 3, 2)))
    assert patches.shape == (2, 3, 3, 3) and np.all(patches == 0.5)
    with pytest.raises(ValueError, match=r"kernels must have shape \(kh, kw, 3, c_new\)"):
        plots.draw_colour_filters(np.zeros((3, 3, 1, 2)), tmp_path / "g.png")


def test_colour_predictions_and_input_are_drawn(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((7, 32, 32, 3))
    labels = np.arange(7)
    path = plots.draw_predictions(images, labels, labels[::-1], tmp_path / "p.png",
                                  names=CIFAR10_CLASSES)
    assert _png_shape(path) == _pixels(plots.PREDICTIONS_SIZE)
    path = plots.draw_input_and_probabilities(images[0], np.full(10, 0.1), tmp_path / "i.png",
                                              names=CIFAR10_CLASSES)
    assert _png_shape(path) == _pixels(plots.INPUT_SIZE)


# ---------------------------------------------------------------- the page's views of every model
@pytest.mark.parametrize("model", list(ZOO))
def test_the_page_shows_every_model(model, trained, datasets):
    view = serve.NetworkView.from_checkpoint(trained[model])
    loaded = trainer.load_model(trained[model])[0]
    X_valid, _ = _valid(datasets, model)
    image = X_valid[0]
    answer = predict_payload(view, image)
    expected = plots.class_probabilities(loaded, image[None])[0]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert len(answer["probabilities"]) == len(view.class_names)
    assert answer["image_shape"] == list(loaded.input_shape)
    names = list(loaded.outputs(image[None]))
    assert [layer["name"] for layer in answer["layers"]] == names[1:-1]
    back = backprop_payload(view, image, 1)
    assert back["loss"] == pytest.approx(
        float(loaded.loss_layer.losses(loaded.forward(image[None]), [1])[0]), rel=1e-4)
    assert back["gradients"][0]["name"] == "input"
    assert back["gradients"][0]["shape"] == list(loaded.input_shape)
    kind = {1: "maps", 3: "colours"}[loaded.input_shape[2]] if model != "mlp" else None
    assert (back["kernels"] or {}).get("kind") == kind
    about = view.about()
    assert about["input"]["drawable"] == (loaded.input_shape[2] == 1)
    assert about["layers"][-1]["shape"] == [len(view.class_names)]


def test_colour_kernels_are_sent_as_colours(trained):
    view = serve.NetworkView.from_checkpoint(trained["cifar-cnn"])
    kernels = view.first_kernels()
    answer = backprop_payload(view, np.zeros((32, 32, 3)), 0)["kernels"]
    assert answer["shape"] == [3, 3, 3, 16]
    codes = np.frombuffer(base64.b64decode(answer["codes"]), dtype=np.uint8)
    limit = np.abs(kernels).max()
    expected = np.rint(255 * (kernels.transpose(3, 0, 1, 2) + limit) / (2 * limit))
    np.testing.assert_array_equal(codes, expected.ravel())


@pytest.mark.parametrize("model, layer", [("happy-model", "conv1"), ("signs-cnn", "conv2")])
def test_inspect_a_padded_or_pooled_convolution(model, layer, trained, datasets):
    view = serve.NetworkView.from_checkpoint(trained[model])
    image = _valid(datasets, model)[0][0]
    answer = view.inspect(image, layer, 3, 1, 2)
    assert answer["sum_plus_bias"] == pytest.approx(answer["output"], rel=1e-4, abs=1e-5)
    window = np.array(answer["window"])
    kernel = np.array(answer["kernel"])
    z = conv_forward(window[None], kernel[..., None], np.full((1, 1, 1, 1), answer["bias"]),
                     lambda v: v, padding="valid")
    assert float(z[0, 0, 0, 0]) == pytest.approx(answer["output"], rel=1e-4, abs=1e-5)


def test_a_sigmoid_models_split_is_browsed_with_two_classes(trained, datasets):
    view = serve.NetworkView.from_checkpoint(trained["happy-model"])
    browser = serve.browser_for(view, "happy", datasets["happy"])
    images, _, predictions, probabilities = browser.split("valid")
    p = trainer.load_model(trained["happy-model"])[0].predict_proba(images)[:, 0]
    np.testing.assert_array_equal(predictions, (p > 0.5).astype(int))
    assert probabilities.shape == (len(images), 2)
    assert browser.summary("valid")["class_names"] == ["not happy", "happy"]


def _client(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient(app)


def test_the_server_answers_for_a_dataset_image_and_a_colour_upload(trained, datasets):
    pytest.importorskip("starlette")
    from PIL import Image
    view = serve.NetworkView.from_checkpoint(trained["cifar-cnn"])
    app = serve.build_app(view, browser=serve.browser_for(view, "cifar10", datasets["cifar10"]))
    X_valid = load_dataset("cifar10", datasets["cifar10"])[2]
    with _client(app) as client:
        about = client.get("/api/model").json()
        assert about["input"] == {"shape": [32, 32, 3], "colour": True, "drawable": False,
                                  "thing": "a picture",
                                  "rule": preparation_rule((32, 32, 3))}
        answer = client.post("/api/predict?split=valid&index=2").json()
        np.testing.assert_array_equal(np.array(answer["image"], np.float32).reshape(32, 32, 3),
                                      X_valid[2])
        buffer = io.BytesIO()
        Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)) \
            .save(buffer, format="PNG")
        answer = client.post("/api/predict", content=buffer.getvalue()).json()
        expected = prepare_image(io.BytesIO(buffer.getvalue()), (32, 32, 3))
        np.testing.assert_array_equal(np.array(answer["image"], np.float32).reshape(32, 32, 3),
                                      expected)
        inspected = client.post("/api/inspect?layer=conv1&row=0&col=0&channel=0&split=test"
                                "&index=1").json()
        assert inspected["padding"][0] == [True, True, True]
        bad = client.post("/api/predict?split=valid&index=999")
        assert bad.status_code == 400 and "index must be an integer from 0 to" in \
            bad.json()["error"]
    with _client(serve.build_app(view)) as bare:
        answer = bare.post("/api/backprop?label=1&split=valid&index=0")
        assert answer.status_code == 404 and "no data set" in answer.json()["error"]
