"""The page of ``convnet serve`` for a colour network, a dense-only one and a Fashion-MNIST one.

The same headless Chromium as ``test_serve_browser.py`` (which covers a grey
LeNet-5) opens the page of each model, trained here for a moment: a
cifar-cnn on coloured shapes (``colour_data``), the MLP on a slice of MNIST
and a LeNet-5 on a slice of Fashion-MNIST. Every view must work and say
what it shows; Clear must reset every view; answers that arrive after a
newer request must never show; the class names must fit; and at 420 pixels
the page must not scroll sideways. With ``CONVNET_SCREENSHOTS=DIR`` the
colour model's views are saved as ``colour-*.png`` in DIR.
"""
import time
from pathlib import Path

import numpy as np
import pytest
from colour_data import shapes_npz
from test_serve_browser import (
    SEVEN,
    TIMEOUT,
    canvas_pixels,
    draw_strokes,
    new_driver,
    screenshot,
    wait_idle,
)

import convnet
from convnet.data import load_dataset
from convnet.data.cifar10 import CIFAR10_CLASSES
from convnet.data.images import prepare_image
from convnet.nn.ops import conv_forward
from convnet.training.trainer import load_model

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _train(model, dataset, data, folder, epochs=1):
    config = convnet.TrainConfig(model=model, dataset=dataset, data=str(data), epochs=epochs,
                                 out=str(folder / model), processes=1)
    return Path(convnet.train(config).files["checkpoint"])


@pytest.fixture(scope="module")
def runs(mnist_slice, tmp_path_factory):
    """``{name: (checkpoint, dataset, data)}`` for the colour, dense-only and Fashion pages."""
    folder = tmp_path_factory.mktemp("runs")
    shapes, _ = shapes_npz(folder / "cifar10.npz", CIFAR10_CLASSES, 32, (400, 60, 60))
    digits = mnist_slice(folder / "MNIST.npz", 300, 60, 60)
    found = {"colour": (_train("cifar-cnn", "cifar10", shapes, folder, epochs=2), "cifar10",
                        shapes),
             "dense": (_train("mlp", "mnist", digits, folder), "mnist", digits)}
    if FASHION_DIR.is_dir():
        arrays = load_dataset("fashion-mnist", FASHION_DIR)
        clothes = folder / "fashion.npz"
        np.savez(clothes, **{key: array[:limit] for key, array, limit in zip(
            ("X_train", "Y_train", "X_valid", "Y_valid", "X_test", "Y_test"), arrays,
            (300, 300, 60, 60, 60, 60))})
        found["fashion"] = (_train("lenet5", "fashion-mnist", clothes, folder), "fashion-mnist",
                            clothes)
    return found


@pytest.fixture(scope="module")
def servers(runs):
    """The page of each run, served on a free loopback port: ``{name: url}``."""
    from convnet.apps.page import serve
    started, urls = [], {}
    try:
        for name, (checkpoint, dataset, data) in runs.items():
            view = serve.NetworkView.from_checkpoint(checkpoint)
            # The run's folder and file name: what the screenshots show of the path.
            app = serve.build_app(view, browser=serve.browser_for(view, dataset, data),
                                  checkpoint=f"{checkpoint.parent.name}/{checkpoint.name}")
            started.append(serve.ServerThread(app).start())
            urls[name] = started[-1].url
        yield urls
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = new_driver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


def _open(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    return driver.execute_script("return window.convnet.state.model")


def _wait(driver, script, *args, timeout=TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script, *args))


def _tab(driver, view):
    driver.find_element("css selector", f"#tabs button[data-view='{view}']").click()


def _pick(driver, position):
    """Click the ``position``-th image of the dataset picker; return its index."""
    _wait(driver, "return document.querySelectorAll('#pick-images .thumb').length > 0")
    thumb = driver.find_elements("css selector", "#pick-images .thumb")[position]
    index = int(thumb.get_attribute("data-index"))
    before = driver.execute_script("return window.convnet.state.updates")
    thumb.click()
    _wait(driver, "const s = window.convnet.state; return s.updates > arguments[0] && !s.busy "
                  "&& s.source && s.source.kind === 'dataset';", before)
    return index


def _backprop(driver, label):
    driver.find_element("css selector", f"#label-buttons button[data-label='{label}']").click()
    _wait(driver, "const b = window.convnet.state.backprop; return b !== null && "
                  "b.label === arguments[0];", label)
    return driver.execute_script("return window.convnet.state.backprop")


def _no_sideways_scroll(driver):
    return driver.execute_script(
        "const e = document.documentElement; return e.scrollWidth <= e.clientWidth;")


# ---------------------------------------------------------------- a colour network
def test_colour_model_every_view(driver, servers, runs, tmp_path):
    checkpoint, _, data = runs["colour"]
    model = _open(driver, servers["colour"])
    assert model["input"]["shape"] == [32, 32, 3]
    assert driver.find_element("id", "input-heading").text == "Choose a picture (CIFAR-10)"
    assert not driver.find_element("css selector", "#sources [data-source='draw']").is_displayed()
    X_valid, Y_valid = load_dataset("cifar10", data)[2:4]
    index = _pick(driver, 2)
    result = driver.execute_script("return window.convnet.state.result")
    np.testing.assert_array_equal(np.array(result["image"], np.float32).reshape(32, 32, 3),
                                  X_valid[index])
    # The network's input is drawn in colour, pixel for pixel.
    seen = canvas_pixels(driver, driver.find_element("id", "seen"))
    np.testing.assert_array_equal(seen[:, :, :3], np.rint(X_valid[index] * 255))
    weights = load_model(checkpoint)[0]
    probabilities = weights.predict_proba(X_valid[index:index + 1])[0]
    assert driver.find_element("id", "prediction").text == \
        CIFAR10_CLASSES[int(probabilities.argmax())]
    assert f"truth: {CIFAR10_CLASSES[Y_valid[index]]}" in driver.find_element("id", "status").text
    rows = driver.find_elements("css selector", "#layers .layer")
    assert [row.get_attribute("data-layer") for row in rows] == \
        [layer["name"] for layer in model["layers"][1:-1]]
    screenshot(driver, "colour-draw")

    # Inspect conv1 at a pixel: the window holds the three colour channels of the image.
    row, col, channel = 5, 7, 4
    canvas = driver.find_element("css selector",
                                 f"#layers canvas[data-layer='conv1'][data-channel='{channel}']")
    from selenium.webdriver.common.action_chains import ActionChains
    size = canvas.size
    ActionChains(driver).move_to_element_with_offset(
        canvas, int((col + 0.5) * size["width"] / 32 - size["width"] / 2),
        int((row + 0.5) * size["height"] / 32 - size["height"] / 2)).click().perform()
    _wait(driver, "const s = window.convnet.state.inspect; return s !== null && s.row === 5 "
                  "&& s.col === 7;")
    W, b = list(weights.get_weights().values())[:2]
    z = conv_forward(X_valid[index:index + 1], W, b.reshape(1, 1, 1, -1), lambda v: v,
                     padding="same")
    answer = driver.execute_script("return window.convnet.state.inspect")
    np.testing.assert_array_equal(np.array(answer["window"]), X_valid[index, 4:7, 6:9])
    assert answer["output"] == pytest.approx(float(z[0, row, col, channel]), rel=1e-5, abs=1e-6)
    assert len(driver.find_elements("css selector", "#inspect-result table[data-kind='window']")) == 3
    screenshot(driver, "colour-inspect")

    # Back-propagate: first-layer kernels as colour patches, legend colours on the logits' bars.
    _tab(driver, "backprop")
    truth = int(Y_valid[index])
    _backprop(driver, truth)
    assert len(driver.find_elements("css selector", "#kernel-gradients canvas")) == 32
    logits = driver.find_elements("css selector", "#gradients canvas.strip")[-1]
    assert logits.get_attribute("data-labels") == "|".join(CIFAR10_CLASSES)
    pixels = canvas_pixels(driver, logits)[:, :, :3]
    step = pixels.shape[1] / 10
    # dL/dlogit is p - 1 for the truth (blue, below zero) and p > 0 elsewhere (red), as
    # the legend says: never the highlight colour of the Draw view. The engine's gradient
    # is p - y, and the bars keep its sign even where p is far smaller than the codes'
    # levels (a class the network rules out).
    expected = probabilities - np.eye(10)[truth]
    assert (expected > 0).sum() == 9
    engine = weights.output_gradients(X_valid[index:index + 1], np.array([truth]))
    np.testing.assert_allclose(list(engine.gradients.values())[-1][0], expected, atol=1e-6)
    assert (43, 108, 176) not in {tuple(colour) for colour in pixels.reshape(-1, 3)}
    columns = [{tuple(colour) for colour in pixels[:, int((k + 0.5) * step)]} for k in range(10)]
    assert (107, 143, 214) in columns[truth]
    assert all((214, 95, 95) in column for k, column in enumerate(columns) if k != truth)
    assert all((107, 143, 214) not in column for k, column in enumerate(columns) if k != truth)
    screenshot(driver, "colour-backprop")

    _tab(driver, "browse")
    _wait(driver, "return document.querySelectorAll('#confusion td').length === 100", timeout=60)
    driver.find_element("id", "browse-mistakes").click()
    _wait(driver, "return document.getElementById('browse-caption').textContent"
                  ".startsWith('every mistake')")
    screenshot(driver, "colour-browse")

    # Upload a picture: prepared as the model's input, like `convnet predict` does.
    from PIL import Image
    picture = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(4).random((48, 70, 3)) * 255).astype(np.uint8)) \
        .save(picture)
    _tab(driver, "draw")
    driver.find_element("css selector", "#sources [data-source='upload']").click()
    driver.find_element("id", "upload").send_keys(str(picture))
    _wait(driver, "const s = window.convnet.state; return s.source && s.source.kind === "
                  "'upload' && !s.busy;")
    result = driver.execute_script("return window.convnet.state.result")
    np.testing.assert_array_equal(np.array(result["image"], np.float32).reshape(32, 32, 3),
                                  prepare_image(picture, (32, 32, 3)))
    assert driver.execute_script("return window.convnet.state.updates") >= 2


def test_clear_resets_every_view(driver, servers):
    _open(driver, servers["colour"])
    _pick(driver, 0)
    canvas = driver.find_element("css selector", "#layers canvas[data-layer='conv1']")
    canvas.click()
    _wait(driver, "return window.convnet.state.inspect !== null")
    _tab(driver, "backprop")
    _backprop(driver, 1)
    _tab(driver, "draw")
    driver.find_element("id", "clear").click()
    state = driver.execute_script("const s = window.convnet.state; return [s.source, s.result, "
                                  "s.inspect, s.backprop, s.label];")
    assert state == [None, None, None, None, None]
    assert driver.find_element("id", "prediction").text == "?"
    for container in ("probabilities", "layers", "inspect-result", "kernel-gradients",
                      "gradients"):
        assert driver.execute_script(
            f"return document.getElementById('{container}').children.length") == 0, container
    assert driver.find_elements("css selector", "#label-buttons button.active") == []
    assert driver.find_elements("css selector", "#pick-images .thumb.chosen") == []
    seen = canvas_pixels(driver, driver.find_element("id", "seen"))
    assert seen[:, :, 3].max() == 0   # nothing drawn


def _delay_requests(driver, fragment, milliseconds):
    """Hold back the page's requests whose address contains ``fragment``.

    ``window.heldBack`` counts those answered, so a test can wait until the
    late answer has reached the page.
    """
    driver.execute_script("""
        const [fragment, delay] = arguments;
        const original = window.fetch;
        window.heldBack = 0;
        window.fetch = (url, options) => {
          if (!String(url).includes(fragment)) return original(url, options);
          return new Promise((go) => setTimeout(go, delay)).then(() => original(url, options))
            .then((response) => { window.heldBack += 1; return response; });
        };""", fragment, milliseconds)


def _after_the_late_answer(driver):
    """Wait until the held-back answer has come, and the page has had time to handle it."""
    _wait(driver, "return window.heldBack > 0")
    time.sleep(0.3)


def test_late_answers_never_show_under_a_newer_choice(driver, servers, runs):
    from selenium.webdriver.support.ui import Select
    _open(driver, servers["colour"])
    _delay_requests(driver, "split=valid", 500)
    _tab(driver, "browse")                  # asks for the validation split: held back
    Select(driver.find_element("id", "browse-split")).select_by_value("test")
    _wait(driver, "return document.getElementById('browse-summary').textContent"
                  ".startsWith('test split')")
    _after_the_late_answer(driver)
    summary = driver.find_element("id", "browse-summary").text
    assert summary.startswith("test split: 60 images")
    counts = [int(td.text) for td in driver.find_elements("css selector", "#confusion td")]
    assert sum(counts) == 60

    _open(driver, servers["colour"])
    _pick(driver, 1)
    _tab(driver, "backprop")
    _delay_requests(driver, "label=3", 500)
    driver.find_element("css selector", "#label-buttons button[data-label='3']").click()
    _backprop(driver, 5)
    _after_the_late_answer(driver)
    assert driver.execute_script("return window.convnet.state.backprop.label") == 5
    assert "true label dog" in driver.find_element("id", "backprop-loss").text


# ---------------------------------------------------------------- a network without convolution
def test_dense_only_model_shows_its_dense_layers(driver, servers):
    model = _open(driver, servers["dense"])
    assert not any(layer["inspectable"] for layer in model["layers"])
    draw_strokes(driver, driver.find_element("id", "draw"), SEVEN)
    wait_idle(driver)
    rows = driver.find_elements("css selector", "#layers .layer")
    assert [row.get_attribute("data-layer") for row in rows] == \
        ["flatten", "dense1", "dense1/relu", "dense2", "dense2/relu", "dense3"]
    strips = driver.find_elements("css selector", "#layers canvas.strip")
    assert len(strips) == 6
    assert strips[-1].get_attribute("data-labels") == "|".join(str(k) for k in range(10))
    for strip in strips:
        assert canvas_pixels(driver, strip)[:, :, 3].max() > 0
    _tab(driver, "inspect")
    assert "no convolution" in driver.find_element("id", "inspect-where").text
    _tab(driver, "backprop")
    answer = _backprop(driver, 7)
    assert answer["kernels"] is None
    assert "no convolution" in driver.find_element("id", "kernel-gradients").text
    assert len(driver.find_elements("css selector", "#gradients .layer")) == 7


# ---------------------------------------------------------------- Fashion-MNIST's names
def test_fashion_names_fit_their_labels_and_buttons(driver, servers):
    if "fashion" not in servers:
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DIR}")
    _open(driver, servers["fashion"])
    heading = driver.find_element("id", "input-heading").text
    assert heading == "Draw a piece of clothing (Fashion-MNIST)"
    draw_strokes(driver, driver.find_element("id", "draw"), SEVEN)
    wait_idle(driver)
    overflowing = driver.execute_script("""
        const out = [];
        for (const name of document.querySelectorAll('#probabilities .name')) {
          const fill = name.nextElementSibling.getBoundingClientRect();
          if (name.scrollWidth > name.clientWidth ||
              name.getBoundingClientRect().right > fill.left) out.push(name.textContent);
        }
        return out;""")
    assert overflowing == []
    _tab(driver, "backprop")
    buttons = driver.find_elements("css selector", "#label-buttons button")
    assert [button.text for button in buttons][:3] == ["T-shirt", "Trouser", "Pullover"]
    assert driver.execute_script("""
        return Array.from(document.querySelectorAll('#label-buttons button'))
          .filter((b) => b.scrollWidth > b.clientWidth).map((b) => b.textContent);""") == []
    _backprop(driver, 1)
    screenshot(driver, "fashion-backprop")


# ---------------------------------------------------------------- a narrow screen
@pytest.mark.parametrize("name", ["colour", "dense", "fashion"])
def test_a_narrow_screen_never_scrolls_sideways(driver, servers, name):
    if name not in servers:
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DIR}")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 420, "height": 800, "deviceScaleFactor": 1,
                            "mobile": False})
    try:
        model = _open(driver, servers[name])
        assert driver.execute_script("return window.innerWidth") == 420
        if model["input"]["drawable"]:
            draw_strokes(driver, driver.find_element("id", "draw"), SEVEN)
            wait_idle(driver)
        else:
            _pick(driver, 0)
        assert _no_sideways_scroll(driver), "draw"
        for view in ("inspect", "backprop", "browse", "watch"):
            _tab(driver, view)
            if view == "backprop":
                _backprop(driver, 1)
            if view == "browse":
                _wait(driver, "return document.querySelectorAll('#confusion td').length > 0",
                      timeout=60)
            assert _no_sideways_scroll(driver), view
        if name == "colour":
            _tab(driver, "browse")
            screenshot(driver, "colour-narrow")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# ---------------------------------------------------------------- Watch training, any first layer
def test_watch_draws_colour_kernels_and_says_when_there_are_none(driver, runs):
    """Training events carry the first layer's kernels channel last, one list per kernel."""
    from convnet.apps.page import serve
    checkpoint = runs["colour"][0]
    view = serve.NetworkView.from_checkpoint(checkpoint)
    kernels = view.first_kernels()
    feed = serve.TrainingFeed()
    feed.publish({"step": 50, "epoch": 1, "loss": 1.5, "accuracy": 0.5,
                  "kernels": [kernels[:, :, :, k].ravel().tolist()
                              for k in range(kernels.shape[3])],
                  "kernel_shape": list(kernels.shape)})
    server = serve.ServerThread(serve.build_app(view, feed=feed)).start()
    try:
        _open(driver, server.url)
        _tab(driver, "watch")
        _wait(driver, "return document.querySelectorAll('#watch-filters canvas').length === 16")
        patch = canvas_pixels(driver, driver.find_elements("css selector",
                                                            "#watch-filters canvas")[0])
        limit = np.abs(kernels).max()
        np.testing.assert_array_equal(patch[:, :, :3],
                                      np.rint(255 * (0.5 + kernels[:, :, :, 0] / (2 * limit))))
        feed.publish({"step": 100, "epoch": 1, "loss": 1.0, "accuracy": 0.6, "kernels": [],
                      "kernel_shape": []})
        _wait(driver, "return document.getElementById('watch-filters').textContent"
                      ".includes('no convolution')")
    finally:
        server.stop()
