"""Tests of ``convnet serve``'s application through Starlette's ASGI test client.

The answers are checked against the library computed independently: the
``convnet predict`` path (``load_digit_image`` then ``LeNet5.predict_proba``),
a pixel-loop convolution, finite differences of the loss, and label counts.
"""
import base64
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    # Starlette's test client announces a move to another HTTP package.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from reference_ops import reference_conv_forward

from convnet.apps.page import serve
from convnet.data.images import load_digit_image
from convnet.nn.lenet5 import LeNet5
from convnet.nn.optim import Adam
from convnet.training import trainer


def load_model(path, dtype=np.float32):
    return trainer.load_model(path, dtype=dtype)[0]


def weight_list(model):
    return list(model.get_weights().values())


def save_checkpoint(model, path, dataset="mnist", names=tuple("0123456789")):
    """Write ``model`` as ``convnet train`` writes its checkpoint."""
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": dataset, "train_size": 8}
    history = {key: [2.3] for key in trainer.HISTORY_KEYS}
    history["epoch_seconds"] = []
    trainer.save_checkpoint(path, model, Adam(model.parameters()), 0, settings, history, names)
    return path


def seven_png(size=(120, 160), ink=255, paper=0, width=9):
    """PNG bytes of a '7': a top bar and a diagonal, light on dark by default."""
    from PIL import Image, ImageDraw
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.line([(0.25 * w, 0.2 * h), (0.75 * w, 0.2 * h)], fill=ink, width=width)
    draw.line([(0.75 * w, 0.2 * h), (0.4 * w, 0.85 * h)], fill=ink, width=width)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained LeNet-5 with non-zero biases, so that the bias shows in the sums."""
    model = LeNet5(seed=3)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = rng.normal(0, 0.1, layer.params["b"].shape)
    path = tmp_path_factory.mktemp("serve") / "checkpoint.npz"
    return save_checkpoint(model, path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small MNIST.npz with random images and labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 4), ("valid", 60), ("test", 30)):
        arrays["X_" + split] = rng.random((n, 28, 28), dtype=np.float32) * 0.99
        arrays["Y_" + split] = rng.integers(0, 10, n)
    path = tmp_path_factory.mktemp("data") / "MNIST.npz"
    np.savez(path, **arrays)
    return path, arrays


@pytest.fixture(scope="module")
def client(checkpoint, dataset):
    view = serve.NetworkView.from_checkpoint(checkpoint)
    app = serve.build_app(view, browser=serve.browser_for(view, "mnist", dataset[0]),
                          checkpoint=str(checkpoint))
    with TestClient(app) as test_client:
        yield test_client


def _image_of(png):
    return load_digit_image(io.BytesIO(png))


# ---------------------------------------------------------------- page and assets
def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="draw"' in page.text
    for name, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
        answer = client.get(f"/assets/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(media)
        assert answer.content == (serve.WEB_DIR / name).read_bytes()


def test_page_loads_nothing_from_elsewhere(client):
    for url in ("/", "/assets/app.js", "/assets/style.css"):
        text = client.get(url).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


@pytest.mark.parametrize("url", [
    "/assets/serve.py", "/assets/index.html", "/assets/..%2Fserve.py", "/assets/%2e%2e/cli.py",
    "/assets/../serve.py", "/etc/passwd", "/assets/", "/assets/app.js/..",
])
def test_only_the_packages_assets_are_served(client, url):
    answer = client.get(url)
    assert answer.status_code == 404
    assert b"import" not in answer.content


def test_answers_forbid_loading_from_elsewhere(client):
    for url in ("/", "/assets/app.js", "/api/model", "/assets/nothing"):
        headers = client.get(url).headers
        assert headers["content-security-policy"].startswith("default-src 'self';")
        assert "script-src 'self';" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("host, status", [("127.0.0.1:8000", 200), ("localhost", 200),
                                          ("[::1]:8000", 200), ("attacker.example", 400),
                                          ("127.0.0.1.attacker.example", 400)])
def test_loopback_server_answers_only_to_loopback_names(checkpoint, host, status):
    app = serve.build_app(serve.NetworkView.from_checkpoint(checkpoint),
                          allowed_hosts=serve.LOOPBACK_NAMES)
    with TestClient(app) as local:
        assert local.get("/api/model", headers={"host": host}).status_code == status


# ---------------------------------------------------------------- model and predict
def test_model_describes_every_layer(client, checkpoint):
    answer = client.get("/api/model").json()
    model = load_model(checkpoint)
    maps = model.feature_maps(np.zeros((1, 28, 28)))
    assert [row["name"] for row in answer["layers"]] == [name for name, _ in maps]
    assert [tuple(row["shape"]) for row in answer["layers"]] == [a.shape[1:] for _, a in maps]
    inspectable = [row["name"] for row in answer["layers"] if row["inspectable"]]
    assert inspectable == ["conv1", "conv1/relu", "conv2", "conv2/relu"]
    assert answer["class_names"] == [str(k) for k in range(10)]
    assert answer["browse"] is True and answer["training"] is False


@pytest.mark.parametrize("ink, paper", [(255, 0), (10, 240)])
def test_predict_equals_convnet_predict(client, checkpoint, ink, paper):
    png = seven_png(ink=ink, paper=paper)
    answer = client.post("/api/predict", content=png)
    assert answer.status_code == 200
    result = answer.json()
    image = _image_of(png)
    np.testing.assert_array_equal(np.array(result["image"], np.float32).reshape(28, 28), image)
    expected = load_model(checkpoint).predict_proba(image[None])[0]
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-6, atol=1e-7)
    assert result["prediction"] == int(expected.argmax())


def decoded(layer):
    """The values of a drawn layer as the page decodes them, in the layer's shape."""
    codes = np.frombuffer(base64.b64decode(layer["codes"]), dtype=np.uint8)
    values = layer["min"] + codes * (layer["max"] - layer["min"]) / 255
    if layer["kind"] == "maps":
        h, w, c = layer["shape"]
        return values.reshape(c, h, w).transpose(1, 2, 0)
    return values


def _step(layer):
    """Largest error of a decoded value: half a code."""
    return (layer["max"] - layer["min"]) / 510 + 1e-12


def test_predict_sends_every_layers_output(client, checkpoint):
    png = seven_png()
    result = client.post("/api/predict", content=png).json()
    maps = load_model(checkpoint).feature_maps(_image_of(png)[None])
    assert [layer["name"] for layer in result["layers"]] == [name for name, _ in maps[1:-1]]
    for layer, (name, activation) in zip(result["layers"], maps[1:-1]):
        activation = activation[0].astype(np.float64)
        assert layer["kind"] == ("maps" if activation.ndim == 3 else "vector")
        assert layer["shape"] == list(activation.shape)
        assert layer["min"] == activation.min() and layer["max"] == activation.max()
        np.testing.assert_allclose(decoded(layer), activation, rtol=0, atol=_step(layer))


def test_first_layer_maps_equal_a_pixel_loop(client, checkpoint):
    png = seven_png()
    result = client.post("/api/predict", content=png).json()
    model = load_model(checkpoint, dtype=np.float64)
    W, b = weight_list(model)[:2]
    image = _image_of(png).astype(np.float64)[None, :, :, None]
    expected = reference_conv_forward(image, W, b.reshape(1, 1, 1, -1), lambda z: z)[0]
    conv1 = result["layers"][0]
    np.testing.assert_allclose(decoded(conv1), expected, rtol=0, atol=_step(conv1) + 1e-5)


@pytest.mark.parametrize("shape", [(3, 4, 2), (7,), (2, 2, 1)])
def test_drawing_codes_quantise_between_the_limits(shape):
    values = np.random.default_rng(0).normal(size=shape)
    low, high = values.min(), values.max()
    codes = np.frombuffer(base64.b64decode(serve.drawing_codes(values, low, high)), np.uint8)
    ordered = values.transpose(2, 0, 1).ravel() if values.ndim == 3 else values
    expected = [round(255 * (v - low) / (high - low)) for v in ordered]
    np.testing.assert_array_equal(codes, expected)
    assert codes.min() == 0 and codes.max() == 255
    flat = serve.drawing_codes(np.full(shape, 2.5), 2.5, 2.5)
    assert set(base64.b64decode(flat)) == {0}


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "must carry an image"),
    (b"not an image at all", 400, "cannot read image in the request body"),
    (None, 400, "shows no digit"),
])
def test_predict_rejects_bad_images(client, body, status, message):
    if body is None:
        from PIL import Image
        buffer = io.BytesIO()
        Image.new("L", (50, 50), 0).save(buffer, format="PNG")
        body = buffer.getvalue()
    answer = client.post("/api/predict", content=body)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert "BytesIO" not in answer.json()["error"]


def test_request_body_has_a_size_limit(checkpoint):
    app = serve.build_app(serve.NetworkView.from_checkpoint(checkpoint), max_body_bytes=1000)
    with TestClient(app) as small:
        answer = small.post("/api/predict", content=b"\0" * 1001)
        assert answer.status_code == 413
        assert "limit of 1000 bytes" in answer.json()["error"] or "limit is 1000" in \
            answer.json()["error"]
        assert small.post("/api/predict", content=seven_png(size=(40, 50))).status_code == 200


def test_image_of_too_many_pixels_is_refused_before_decoding(client):
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("L", (5000, 4000), 0).save(buffer, format="PNG")   # compresses to a few kB
    answer = client.post("/api/predict", content=buffer.getvalue())
    assert answer.status_code == 400
    assert "5000x4000 pixels" in answer.json()["error"]


def test_image_claiming_a_huge_size_is_refused(client):
    """A PNG whose header claims 30000 x 30000 pixels (a few bytes of data)."""
    import struct
    import zlib
    png = bytearray(seven_png(size=(20, 20)))
    png[16:24] = struct.pack(">II", 30000, 30000)   # width and height in the IHDR chunk
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    answer = client.post("/api/predict", content=bytes(png))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("image in the request body is too large")


# ---------------------------------------------------------------- inspect
@pytest.mark.parametrize("layer, row, col, channel", [
    ("conv1", 0, 0, 0), ("conv1", 14, 13, 5), ("conv1/relu", 27, 3, 2),
    ("conv2", 0, 9, 15), ("conv2/relu", 4, 6, 7),
])
def test_inspect_shows_the_arithmetic_of_conv_forward(client, checkpoint, layer, row, col,
                                                      channel):
    from convnet.nn.ops import conv_forward
    png = seven_png()
    answer = client.post(f"/api/inspect?layer={layer}&row={row}&col={col}&channel={channel}",
                         content=png)
    assert answer.status_code == 200
    shown = answer.json()
    model = load_model(checkpoint)
    maps = dict(model.feature_maps(_image_of(png)[None]))
    conv = {"conv1": "conv1", "conv1/relu": "conv1", "conv2": "conv2", "conv2/relu": "conv2"}[layer]
    previous = {"conv1": "input", "conv2": "pool1"}[conv]
    index = {"conv1": 0, "conv2": 2}[conv]
    W, b = weight_list(model)[index:index + 2]
    padding = {"conv1": "same", "conv2": "valid"}[conv]
    A_prev = maps[previous]
    relu_z = conv_forward(A_prev, W, b.reshape(1, 1, 1, -1), lambda z: np.maximum(z, 0),
                          padding=padding)
    z = conv_forward(A_prev, W, b.reshape(1, 1, 1, -1), lambda z: z, padding=padding)
    assert shown["output"] == float(z[0, row, col, channel])
    assert shown["activation"] == "relu"
    assert shown["activated"] == float(relu_z[0, row, col, channel])
    assert shown["bias"] == float(b[channel])
    # The window, read by hand from the zero-padded input.
    kh = W.shape[0]
    pad = (kh - 1) // 2 if padding == "same" else 0
    padded = np.pad(A_prev[0], ((pad, kh - 1 - pad), (pad, kh - 1 - pad), (0, 0)))
    window = padded[row:row + kh, col:col + kh]
    np.testing.assert_array_equal(np.array(shown["window"], np.float32), window)
    np.testing.assert_array_equal(np.array(shown["kernel"], np.float32), W[:, :, :, channel])
    products = np.array(shown["products"])
    np.testing.assert_array_equal(products, (window * W[:, :, :, channel]).astype(np.float64))
    assert shown["sum"] == pytest.approx(products.sum(), rel=1e-12)
    assert shown["sum_plus_bias"] == pytest.approx(shown["sum"] + shown["bias"], rel=1e-12)
    assert shown["sum_plus_bias"] == pytest.approx(shown["output"], rel=1e-5, abs=1e-6)
    inside = np.zeros(padded.shape[:2], bool)
    inside[pad:pad + A_prev.shape[1], pad:pad + A_prev.shape[2]] = True
    np.testing.assert_array_equal(shown["padding"], ~inside[row:row + kh, col:col + kh])


@pytest.mark.parametrize("query, message", [
    ("layer=pool1&row=0&col=0&channel=0", "layer must be one of conv1, conv1/relu, conv2, conv2/relu"),
    ("layer=nope&row=0&col=0&channel=0", "received 'nope'"),
    ("row=0&col=0&channel=0", "query parameter layer is required"),
    ("layer=conv1&row=28&col=0&channel=0", "row must be an integer from 0 to 27"),
    ("layer=conv2&row=0&col=-1&channel=0", "col must be an integer from 0 to 9"),
    ("layer=conv1&row=0&col=0&channel=6", "channel must be an integer from 0 to 5"),
    ("layer=conv1&row=a&col=0&channel=0", "row must be an integer, received 'a'"),
    ("layer=conv1&col=0&channel=0", "query parameter row is required"),
])
def test_inspect_rejects_bad_queries(client, query, message):
    answer = client.post("/api/inspect?" + query, content=seven_png())
    assert answer.status_code == 400
    assert message in answer.json()["error"]


# ---------------------------------------------------------------- back-propagate
def test_backprop_gradients_equal_finite_differences(checkpoint):
    """dL/d(input) and dL/d(conv1 kernels) in float64 against centred differences."""
    model = load_model(checkpoint, dtype=np.float64)
    view = serve.NetworkView(model)
    # Random pixels: no two values of a pooling window tie, so the loss is
    # differentiable there and centred differences are its gradient.
    image = np.random.default_rng(5).random((28, 28)) * 0.99
    label = 3
    loss, probabilities, gradients, kernel_gradient = view.backward(image, label)
    names = [name for name, _ in gradients]
    assert names == ["input"] + [layer.name for layer in model.layers]

    def loss_of(x):
        logits = model.forward(x[None])
        return float(model.loss_layer.losses(logits, np.array([label]))[0])

    assert loss == pytest.approx(loss_of(image), rel=1e-12)
    np.testing.assert_allclose(probabilities, model.predict_proba(image[None])[0], rtol=1e-12)
    eps = 1e-6
    rng = np.random.default_rng(0)
    d_input = dict(gradients)["input"][:, :, 0]
    for r, c in [(14, 14), (8, 20)] + [tuple(rng.integers(4, 24, 2)) for _ in range(4)]:
        up, down = image.copy(), image.copy()
        up[r, c] += eps
        down[r, c] -= eps
        numeric = (loss_of(up) - loss_of(down)) / (2 * eps)
        assert d_input[r, c] == pytest.approx(numeric, rel=1e-4, abs=1e-8)
    W = model.layers[0].params["W"]
    for index in [(0, 0, 0, 0), (2, 2, 0, 3), (4, 1, 0, 5)]:
        saved = W[index]
        W[index] = saved + eps
        up = loss_of(image)
        W[index] = saved - eps
        down = loss_of(image)
        W[index] = saved
        assert kernel_gradient[index] == pytest.approx((up - down) / (2 * eps), rel=1e-4,
                                                       abs=1e-8)


def test_backprop_layer_gradients_chain_through_the_layers(checkpoint):
    """Each layer's gradient is the next layer's gradient pulled back: spot-check dense1."""
    model = load_model(checkpoint, dtype=np.float64)
    view = serve.NetworkView(model)
    _, _, gradients, _ = view.backward(_image_of(seven_png()).astype(np.float64), 7)
    gradients = dict(gradients)
    dense2 = model.layers[9]
    relu3_mask = (dict(view.forward(_image_of(seven_png())))["dense1"] > 0)
    np.testing.assert_allclose(gradients["dense1/relu"], gradients["dense2"] @ dense2.params["W"].T,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gradients["dense1"], gradients["dense1/relu"] * relu3_mask,
                               rtol=1e-10, atol=1e-14)


STRIDED_SPEC = {"name": "strided", "layers": [
    {"layer": "Input", "shape": [28, 28, 1]},
    {"layer": "Conv2D", "name": "conv1", "filters": 4, "kernel": 3, "stride": 2,
     "padding": "same", "activation": "relu"},
    {"layer": "Conv2D", "name": "conv2", "filters": 3, "kernel": 3, "stride": 2,
     "padding": "valid", "activation": "tanh"},
    {"layer": "Flatten", "name": "flatten"},
    {"layer": "Dense", "name": "dense1", "units": 10, "activation": "softmax"},
]}


def test_backprop_through_a_strided_first_convolution(checkpoint):
    """A stride-2 'same' first layer: the view's gradients are the model's and finite differences."""
    from convnet.nn.sequential import Sequential
    model = Sequential(STRIDED_SPEC, seed=2, dtype=np.float64)
    rng = np.random.default_rng(3)
    for param in model.parameters()[1::2]:
        param[...] = rng.normal(0, 0.1, param.shape)
    view = serve.NetworkView(model)
    image = rng.random((28, 28)) * 0.99
    label = 4
    loss, _, gradients, kernel_gradient = view.backward(image, label)
    assert [name for name, _ in gradients] == ["input"] + [layer.name for layer in model.layers]

    def loss_of(x):
        logits = model.forward(x[None])
        return float(model.loss_layer.losses(logits, np.array([label]))[0])

    assert loss == pytest.approx(loss_of(image), rel=1e-12)
    model.loss_and_grads(image[None], np.array([label]))
    np.testing.assert_allclose(kernel_gradient, model.gradients()[0], rtol=1e-10, atol=1e-14)
    d_input = dict(gradients)["input"][:, :, 0]
    assert d_input.shape == (28, 28)
    eps = 1e-6
    for r, c in [(0, 0), (27, 27), (13, 14)] + [tuple(rng.integers(0, 28, 2)) for _ in range(5)]:
        up, down = image.copy(), image.copy()
        up[r, c] += eps
        down[r, c] -= eps
        numeric = (loss_of(up) - loss_of(down)) / (2 * eps)
        assert d_input[r, c] == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    # Inspect reads the window where the strided convolution read it.
    for row, col in [(0, 0), (13, 13), (6, 9)]:
        shown = view.inspect(image, "conv1", row, col, 1)
        assert shown["sum_plus_bias"] == pytest.approx(shown["output"], rel=1e-12, abs=1e-15)


def test_backprop_endpoint(client, checkpoint):
    png = seven_png()
    answer = client.post("/api/backprop?label=7", content=png)
    assert answer.status_code == 200
    result = answer.json()
    model = load_model(checkpoint)
    image = _image_of(png)
    model.loss_and_grads(image[None], np.array([7]))
    kernel_gradient = result["kernel_gradient"]
    np.testing.assert_allclose(decoded(kernel_gradient), model.gradients()[0][:, :, 0, :],
                               rtol=0, atol=_step(kernel_gradient) + 1e-9)
    logits = model.forward(image[None])
    assert result["loss"] == pytest.approx(float(model.loss_layer.losses(logits, [7])[0]),
                                           rel=1e-5)
    assert [g["name"] for g in result["gradients"]][:3] == ["input", "conv1", "conv1/relu"]
    for label in ("10", "-1", "x"):
        bad = client.post(f"/api/backprop?label={label}", content=png)
        assert bad.status_code == 400 and "label must be an integer" in bad.json()["error"]



def test_vectors_carry_the_sign_of_every_value(client, checkpoint):
    """The logits' gradient is p - y: the sign the bars draw is the engine's, zeros included."""
    png = seven_png()
    result = client.post("/api/backprop?label=7", content=png).json()
    probabilities = load_model(checkpoint).predict_proba(_image_of(png)[None])[0]
    logits = result["gradients"][-1]
    assert logits["kind"] == "vector"
    signs = np.frombuffer(base64.b64decode(logits["signs"]), np.uint8).astype(int) - 1
    np.testing.assert_array_equal(signs, np.sign(probabilities - np.eye(10)[7]))
    for layer in result["gradients"]:
        if layer["kind"] == "maps":
            assert "signs" not in layer
    values = np.array([-2.0, -1e-9, 0.0, 3e-9, 5.0])
    assert list(base64.b64decode(serve.sign_codes(values))) == [0, 0, 1, 2, 2]


# ---------------------------------------------------------------- browse
@pytest.mark.parametrize("split, first", [("valid", "X_valid"), ("test", "X_test")])
def test_browse_confusion_matrix_and_cells(client, checkpoint, dataset, split, first):
    arrays = dataset[1]
    images, labels = arrays[first], arrays["Y" + first[1:]]
    predicted = load_model(checkpoint).predict_proba(images).argmax(axis=1)
    matrix = np.zeros((10, 10), int)
    for t, p in zip(labels, predicted):
        matrix[t, p] += 1
    summary = client.get(f"/api/browse?split={split}").json()
    np.testing.assert_array_equal(summary["matrix"], matrix)
    assert summary["count"] == len(labels)
    assert summary["mistakes"] == int((labels != predicted).sum())
    t, p = int(labels[0]), int(predicted[0])
    cell = client.get(f"/api/browse/images?split={split}&true={t}&predicted={p}").json()
    expected = [i for i in range(len(labels)) if labels[i] == t and predicted[i] == p]
    assert [item["index"] for item in cell["images"]] == expected
    assert cell["total"] == matrix[t, p]
    first_image = cell["images"][0]
    np.testing.assert_allclose(first_image["pixels"], images[0].ravel(), atol=5e-4)
    mistakes = client.get(f"/api/browse/mistakes?split={split}").json()
    assert [item["index"] for item in mistakes["images"]] == \
        [i for i in range(len(labels)) if labels[i] != predicted[i]]
    assert all(item["label"] != item["predicted"] for item in mistakes["images"])


@pytest.mark.parametrize("url, message", [
    ("/api/browse?split=train", "split must be one of valid, test"),
    ("/api/browse/images?split=valid&true=10", "true must be a class from 0 to 9"),
    ("/api/browse/images?split=valid&predicted=x", "predicted must be an integer"),
])
def test_browse_rejects_bad_queries(client, url, message):
    answer = client.get(url)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_browse_without_data_says_so(checkpoint):
    app = serve.build_app(serve.NetworkView.from_checkpoint(checkpoint))
    with TestClient(app) as bare:
        answer = bare.get("/api/browse")
        assert answer.status_code == 404 and "no data set" in answer.json()["error"]
        answer = bare.get("/api/train/events")
        assert answer.status_code == 404 and "convnet train --serve" in answer.json()["error"]


# ---------------------------------------------------------------- host and command line
@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False),
                                          ("::1", False), ("0.0.0.0", True),
                                          ("192.168.1.5", True)])
def test_host_other_than_loopback_is_warned_about(host, warned):
    warning = serve.host_warning(host)
    assert (warning is not None) == warned
    if warned:
        assert host in warning and "127.0.0.1" in warning


def test_serve_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    from convnet.apps.cli.cli import main
    missing = tmp_path / "none.npz"
    assert main(["serve", "--checkpoint", str(missing)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"convnet: error: checkpoint {missing} not found: train one with "
                     "`convnet train` (or `make demo`), or pass --checkpoint PATH")


def test_serve_shows_a_fashion_checkpoint_with_its_names_and_every_other_model(
        tmp_path, monkeypatch, capsys):
    from convnet.apps.cli.cli import main
    from convnet.data import FASHION_CLASS_NAMES
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    started = {}
    monkeypatch.setattr(serve, "listening_socket", lambda host, port: None)
    monkeypatch.setattr(serve, "run", lambda app, host, port, sock=None: started.update(app=app))
    fashion = save_checkpoint(LeNet5(seed=2), tmp_path / "fashion.npz", "fashion-mnist",
                              [f"class {k}" for k in range(10)])
    assert main(["serve", "--checkpoint", str(fashion), "--port", "8123"]) == 0
    with TestClient(started["app"]) as served:
        answer = served.get("/api/model", headers={"host": "127.0.0.1"}).json()
        assert answer["class_names"] == list(FASHION_CLASS_NAMES)
    capsys.readouterr()
    assert main(["serve", "--checkpoint", str(fashion), "--dataset", "mnist"]) == 2
    assert "was trained on fashion-mnist, not mnist" in capsys.readouterr().err
    # A classic LeNet-5 (tanh, average pooling) is shown: its activations are named.
    classic = save_checkpoint(Sequential(load_spec("lenet5-classic")), tmp_path / "c.npz")
    view = serve.NetworkView.from_checkpoint(classic)
    assert view.inspect(np.zeros((28, 28)), "conv1/tanh", 0, 0, 0)["activation"] == "tanh"
    # A network without convolution and a colour one are shown too.
    for name, shape in (("mlp", [28, 28, 1]), ("cifar-cnn", [32, 32, 3])):
        path = save_checkpoint(Sequential(load_spec(name)), tmp_path / f"{name}.npz",
                               names=[str(k) for k in range(10)])
        assert main(["serve", "--checkpoint", str(path)]) == 0
        with TestClient(started["app"]) as served:
            answer = served.get("/api/model", headers={"host": "127.0.0.1"}).json()
            assert answer["input"]["shape"] == shape


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serve_command_warns_about_other_hosts(checkpoint, monkeypatch, capsys, host, warned):
    from convnet.apps.cli.cli import main
    started = {}
    monkeypatch.setattr(serve, "listening_socket", lambda host, port: None)
    monkeypatch.setattr(serve, "run", lambda app, host, port, sock=None: started.update(
        app=app, host=host, port=port))
    assert main(["serve", "--checkpoint", str(checkpoint), "--host", host, "--port", "8123"]) == 0
    assert (started["host"], started["port"]) == (host, 8123)
    with TestClient(started["app"]) as served:
        # On loopback, requests addressed to another name are refused.
        status = served.get("/api/model", headers={"host": "attacker.example"}).status_code
        assert status == (200 if warned else 400)
    captured = capsys.readouterr()
    assert captured.out == f"serving {checkpoint} on http://{host}:8123/ (Ctrl-C stops)\n"
    assert (captured.err == serve.host_warning(host) + "\n") if warned else captured.err == ""


def test_serve_command_rejects_a_port_above_65535(checkpoint, capsys):
    from convnet.apps.cli.cli import main
    assert main(["serve", "--checkpoint", str(checkpoint), "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == \
        "convnet: error: --port must be at most 65535, received 70000"


def test_fashion_mnist_class_names_reach_the_page(checkpoint):
    from convnet.data import FASHION_CLASS_NAMES
    view = serve.NetworkView.from_checkpoint(checkpoint, FASHION_CLASS_NAMES)
    with TestClient(serve.build_app(view)) as fashion:
        assert fashion.get("/api/model").json()["class_names"] == list(FASHION_CLASS_NAMES)
        answer = fashion.post("/api/predict", content=seven_png()).json()
        assert answer["class_names"] == list(FASHION_CLASS_NAMES)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_convnet_serve_answers_on_loopback(checkpoint, dataset):
    port = _free_port()
    command = [sys.executable, "-m", "convnet", "serve", "--checkpoint", str(checkpoint),
               "--port", str(port), "--data", str(dataset[0])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model",
                                            timeout=2) as answer:
                    model = answer.read().decode()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert '"conv1"' in model
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict",
                                         data=seven_png(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert out.startswith(f"serving {checkpoint} on http://127.0.0.1:{port}/")
    assert "warning" not in err


# ---------------------------------------------------------------- watch training
def test_training_watcher_publishes_every_n_steps(mnist):
    from convnet.nn.optim import Adam
    from convnet.training.trainer import fit
    X, Y = mnist[0][:256], mnist[1][:256]
    X_valid, Y_valid = mnist[2][:100], mnist[3][:100]
    model = LeNet5(seed=0)
    view = serve.NetworkView(LeNet5(seed=1))
    feed = serve.TrainingFeed()
    watcher = serve.TrainingWatcher(model, view, feed, X_valid, Y_valid, every=3)
    losses = []

    def on_step(epoch, loss):
        losses.append(loss)
        watcher(epoch, loss)

    fit(model, Adam(model.parameters()), (X, Y, X_valid, Y_valid), 1, batch_size=32,
        log=lambda line: None, progress=False, on_step=on_step)
    events, count = feed.since(0, timeout=0)
    assert len(losses) == 8 and count == 2   # 256 images in batches of 32; every 3 steps
    assert [event["step"] for event in events] == [3, 6]
    for event, first in zip(events, (0, 3)):
        assert event["loss"] == pytest.approx(np.mean(losses[first:first + 3]), rel=1e-12)
        assert event["epoch"] == 1
    watcher.publish(1)   # the state at the end of training
    last = feed.since(2, timeout=0)[0][-1]
    assert last["step"] == 8
    assert last["loss"] == pytest.approx(np.mean(losses[6:]), rel=1e-12)
    for served, trained in zip(weight_list(view.model), weight_list(model)):
        np.testing.assert_array_equal(served, trained)
    kernels = np.stack([np.reshape(k, (5, 5)) for k in last["kernels"]], axis=-1)
    np.testing.assert_allclose(kernels, weight_list(model)[0][:, :, 0, :], atol=1e-5)
    predictions = model.predict_proba(X_valid).argmax(axis=1)
    assert last["accuracy"] == pytest.approx(float((predictions == Y_valid).mean()))


def test_training_events_stream_as_server_sent_events(checkpoint):
    feed = serve.TrainingFeed()
    view = serve.NetworkView.from_checkpoint(checkpoint)
    kernels = view.first_conv.params["W"]
    feed.publish(serve.training_event(10, 1, 0.5, 0.75, kernels))
    server = serve.ServerThread(serve.build_app(view, feed=feed)).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "api/train/events", timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            feed.publish(serve.training_event(20, 2, 0.25, 0.875, kernels))
            events = []
            while len(events) < 2:
                line = stream.readline().decode()
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: "):]))
        assert [(e["step"], e["epoch"], e["loss"], e["accuracy"]) for e in events] == \
            [(10, 1, 0.5, 0.75), (20, 2, 0.25, 0.875)]
        np.testing.assert_allclose(np.reshape(events[0]["kernels"][4], (5, 5)),
                                   kernels[:, :, 0, 4], atol=1e-5)
    finally:
        server.stop()


def _stream(url, last=None):
    """Every server-sent event of a stream that ends: ``[(id, event), ...]``."""
    request = urllib.request.Request(url + "api/train/events",
                                      headers={} if last is None else {"Last-Event-ID": last})
    received, number = [], None
    with urllib.request.urlopen(request, timeout=10) as stream:
        for line in stream.read().decode().splitlines():
            if line.startswith("id: "):
                number = line[len("id: "):]
            elif line.startswith("data: "):
                received.append((number, json.loads(line[len("data: "):])))
    return received


def test_the_stream_ends_with_the_runs_end_and_resumes_where_a_page_left(checkpoint):
    feed = serve.TrainingFeed()
    view = serve.NetworkView.from_checkpoint(checkpoint)
    for step in (10, 20, 30):
        feed.publish(serve.training_event(step, 1, float("nan") if step == 20 else 0.5, 0.75,
                                          None))
    files = {"checkpoint": "runs/x/checkpoint.npz", "history": "runs/x/history.json"}
    server = serve.ServerThread(serve.build_app(view, feed=feed, checkpoint="(training)")).start()
    try:
        with urllib.request.urlopen(server.url + "api/model", timeout=10) as answer:
            assert json.load(answer)["checkpoint"] == "(training)"
        feed.finish(serve.finished_event(30, 3, 0.875, float("nan"), files))
        whole = _stream(server.url)   # returns: the stream ends after the run's end
        assert [number for number, _ in whole] == ["1", "2", "3", "end"]
        assert [event["step"] for _, event in whole] == [10, 20, 30, 30]
        assert whole[1][1]["loss"] is None and whole[0][1]["event"] == "progress"
        assert whole[-1][1] == {"event": "finished", "step": 30, "epochs": 3,
                                "valid_accuracy": 0.875, "test_accuracy": None,
                                "checkpoint": files["checkpoint"], "files": files}
        # A page that had received two events gets the third and the end; one that names
        # an event never sent starts again.
        assert [number for number, _ in _stream(server.url, "2")] == ["3", "end"]
        assert [number for number, _ in _stream(server.url, "9")] == ["1", "2", "3", "end"]
        with urllib.request.urlopen(server.url + "api/model", timeout=10) as answer:
            assert json.load(answer)["checkpoint"] == files["checkpoint"]
    finally:
        server.stop()
    stopped = serve.TrainingFeed()
    watcher = serve.TrainingWatcher(LeNet5(seed=0), view, stopped, np.zeros((0, 28, 28)),
                                    np.zeros(0, int))
    watcher.stop("interrupted (Ctrl-C)")
    watcher.stop("a second reason is not sent")
    assert stopped.final == {"event": "stopped", "step": 0, "reason": "interrupted (Ctrl-C)"}


def test_train_serve_prints_where_to_watch(tmp_path, capsys, dataset):
    from convnet.apps.cli.cli import main
    port = _free_port()
    assert main(["train", "--serve", "--serve-exit", "--serve-port", str(port),
                 "--serve-every", "1", "--data", str(dataset[0]), "--epochs", "1",
                 "--processes", "1", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"watch the training on http://127.0.0.1:{port}/ (Watch training)"
    with pytest.raises(OSError):   # --serve-exit: the page stops with the training
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2)
    assert not any(line.startswith("training finished; serving") for line in lines)


def test_train_serve_publishes_the_end_of_every_epoch(tmp_path, monkeypatch, capsys, dataset):
    from convnet.apps.cli.cli import main
    feed = serve.TrainingFeed()
    made = {}

    class NoServer:
        url = "http://127.0.0.1:1/"

        def stop(self):
            made["stopped"] = True

    def watch(model, X_valid, Y_valid, port, every, **page):
        made["page"] = page
        view = serve.NetworkView(LeNet5(seed=1))
        made["watcher"] = serve.TrainingWatcher(model, view, feed, X_valid[:10], Y_valid[:10],
                                                every)
        made["view"] = view
        return made["watcher"], NoServer()

    monkeypatch.setattr(serve, "watch_training", watch)
    assert main(["train", "--serve", "--serve-exit", "--serve-every", "50", "--data",
                 str(dataset[0]), "--epochs", "2", "--processes", "1", "--out",
                 str(tmp_path)]) == 0
    events, _ = feed.since(0, timeout=0)
    # 4 training images: one step an epoch, fewer than --serve-every.
    assert [(event["epoch"], event["step"]) for event in events] == [(1, 1), (2, 2)]
    assert made["stopped"]
    # The run's end follows, with the figures and files it printed.
    printed = capsys.readouterr().out.splitlines()
    final = feed.final
    with open(final["files"]["history"]) as file:
        history = json.load(file)
    assert final["event"] == "finished" and (final["step"], final["epochs"]) == (2, 2)
    assert f"validation accuracy {final['valid_accuracy']:.4f}, test accuracy " \
           f"{final['test_accuracy']:.4f}" in printed
    assert final["valid_accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert final["checkpoint"] == str(tmp_path / "checkpoint.npz")
    assert made["page"]["dataset"] == "mnist"
    assert tuple(made["page"]["class_names"]) == tuple(str(k) for k in range(10))
    assert len(made["page"]["load"]()[0]) == 4
    trained = load_model(tmp_path / "checkpoint.npz")
    for served, saved in zip(weight_list(made["view"].model), weight_list(trained)):
        np.testing.assert_array_equal(served, saved)


@pytest.mark.parametrize("backend", ["tf1", "keras"])
def test_train_serve_needs_the_numpy_backend(backend, capsys):
    from convnet.apps.cli.cli import main
    assert main(["train", "--backend", backend, "--serve"]) == 2
    assert capsys.readouterr().err.strip() == \
        "convnet: error: --serve is available with --backend numpy only"
