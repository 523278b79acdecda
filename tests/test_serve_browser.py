"""The page of ``convnet serve`` in a real browser: headless Chromium driven by Selenium.

A 7 is drawn with pointer events on the canvas; the page must show 7, draw
every layer's maps (not blank), and its Inspect view must show the numbers
``convnet.nn.ops.conv_forward`` computes here, in the test, for the same image.

Debian's ``chromium`` and ``chromium-driver`` are used (never a driver
downloaded at run time); without them the tests are skipped. With the
environment variable ``CONVNET_SCREENSHOTS=DIR`` the views are saved as PNGs
in DIR (``make screenshots`` writes those of docs/guide.md), and with
``CONVNET_SERVE_CHECKPOINT=PATH`` that checkpoint is served instead of one
trained here on a small slice of MNIST.
"""
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from convnet.nn.ops import conv_forward, pool_forward

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install chromium chromium-driver"
TIMEOUT = 20

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(f"headless browser tests need {CHROMIUM} and {CHROMEDRIVER}: "
                f"`{INSTALL}`", allow_module_level=True)
pytest.importorskip("selenium", reason="the browser tests need Selenium: "
                                       "pip install -e '.[serve]'")
pytest.importorskip("uvicorn")


def _relu(z):
    return np.maximum(z, 0)


def _identity(z):
    return z


@pytest.fixture(scope="module")
def checkpoint(mnist, tmp_path_factory):
    """A LeNet-5 trained for two epochs on 5,000 MNIST images (a few seconds)."""
    given = os.environ.get("CONVNET_SERVE_CHECKPOINT")
    if given:
        return Path(given)
    from convnet.nn.lenet5 import LeNet5
    from convnet.nn.optim import Adam
    from convnet.training.trainer import train_epoch
    X_train, Y_train = mnist[0][:5000], mnist[1][:5000]
    model = LeNet5(seed=0)
    optimizer = Adam(model.parameters(), lr=2e-3)
    for epoch in (1, 2):
        train_epoch(model, optimizer, X_train, Y_train, 32, 0, epoch)
    path = tmp_path_factory.mktemp("serve") / "checkpoint.npz"
    settings = {"seed": 0, "batch_size": 32, "lr": 2e-3, "dataset": "mnist", "train_size": 5000}
    history = {key: [0.0] * 3 for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    history["epoch_seconds"] = [0.0, 0.0]
    from convnet.training.trainer import save_checkpoint
    save_checkpoint(path, model, optimizer, 2, settings, history, [str(k) for k in range(10)])
    return path


@pytest.fixture(scope="module")
def server(checkpoint):
    """``convnet serve``'s application on uvicorn, in a thread, on a free loopback port."""
    from convnet.apps.page import serve
    view = serve.NetworkView.from_checkpoint(checkpoint)
    app = serve.build_app(view, browser=serve.browser_for(view), checkpoint=str(checkpoint))
    running = serve.ServerThread(app, "127.0.0.1", 0).start(TIMEOUT)
    yield running.url
    running.stop(TIMEOUT)


def new_driver(user_data_dir, size=(1400, 1000)):
    """Headless Chromium with a fresh profile, nothing fetched from the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={user_data_dir}",
                 f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(TIMEOUT)
    return driver


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    """The page loaded in headless Chromium."""
    from selenium.webdriver.support.ui import WebDriverWait
    driver = new_driver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        driver.get(server)
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        yield driver
    finally:
        driver.quit()


def draw_strokes(driver, canvas, strokes, step=8):
    """Draw polylines on ``canvas`` with a pointer: press, move in small steps, release.

    ``strokes`` holds lists of (x, y) points in the canvas's own pixels (280 x 280).
    """
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.mouse_button import MouseButton

    width = canvas.size["width"]
    scale = width / 280
    actions = ActionBuilder(driver, duration=10)
    pointer = actions.pointer_action
    for points in strokes:
        x0, y0 = points[0]
        # Offsets are measured from the element's centre.
        pointer.move_to(canvas, int(x0 * scale - width / 2), int(y0 * scale - width / 2))
        pointer.pointer_down(MouseButton.LEFT)
        for (xa, ya), (xb, yb) in itertools.pairwise(points):
            count = max(1, int(max(abs(xb - xa), abs(yb - ya)) / step))
            for k in range(1, count + 1):
                x = xa + (xb - xa) * k / count
                y = ya + (yb - ya) * k / count
                pointer.move_to(canvas, int(x * scale - width / 2), int(y * scale - width / 2))
        pointer.pointer_up(MouseButton.LEFT)
    actions.perform()


def wait_idle(driver):
    """Wait until every stroke drawn has been sent and its answer drawn."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.execute_script(
        "const s = window.convnet.state; return s.updates > 0 && !s.busy;"))


def screenshot(driver, name):
    """Save the window as DIR/name.png when CONVNET_SCREENSHOTS=DIR is set."""
    folder = os.environ.get("CONVNET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


SEVEN = [[(70, 60), (210, 60)], [(210, 60), (180, 130), (140, 230)]]


@pytest.fixture(scope="module")
def drawn_seven(page):
    """The page after a 7 has been drawn; returns the 28x28 image the server saw."""
    canvas = page.find_element("id", "draw")
    draw_strokes(page, canvas, SEVEN)
    wait_idle(page)
    image = page.execute_script("return window.convnet.state.result.image;")
    return np.array(image, dtype=np.float32).reshape(28, 28)


def test_drawn_seven_is_read_as_seven(page, drawn_seven):
    assert page.find_element("id", "prediction").text == "7"
    probabilities = page.execute_script("return window.convnet.state.result.probabilities;")
    assert int(np.argmax(probabilities)) == 7
    # The 28x28 image is MNIST-like: white strokes on black, centred.
    assert drawn_seven.max() > 0.9 and drawn_seven[0].max() == 0
    screenshot(page, "draw")


def canvas_pixels(driver, canvas):
    """The RGBA pixels of a canvas element, as an (h, w, 4) array."""
    data = driver.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height); return [c.width, c.height, Array.from(d.data)];",
        canvas)
    width, height, values = data
    return np.array(values, dtype=np.uint8).reshape(height, width, 4)


def test_every_layer_is_drawn_and_not_blank(page, drawn_seven):
    rows = page.find_elements("css selector", "#layers .layer")
    names = [row.get_attribute("data-layer") for row in rows]
    expected = page.execute_script("return window.convnet.state.model.layers.map(l => l.name)")
    assert names == expected[1:-1]   # every layer between the input and the softmax
    seen = canvas_pixels(page, page.find_element("id", "seen"))
    np.testing.assert_array_equal(seen[:, :, 0], np.round(255 * (1 - drawn_seven)))
    for row in rows:
        canvases = row.find_elements("css selector", "canvas")
        assert canvases, f"layer {row.get_attribute('data-layer')} has no picture"
        pixels = np.stack([canvas_pixels(page, c)[:, :, :3].reshape(-1, 3).std(axis=0)
                           for c in canvases])
        # Every layer varies across its pixels; for channels, most channels do
        # (a ReLU channel may be all zeros for one image).
        varied = (pixels.max(axis=1) > 0).mean()
        assert varied >= 0.5, f"layer {row.get_attribute('data-layer')} is blank"


def _cells(page, kind, channel=0):
    table = page.find_element("css selector",
                              f"#inspect-result table[data-kind='{kind}'][data-channel='{channel}']")
    cells = table.find_elements("css selector", "td")
    values = np.array([float(cell.get_attribute("data-value")) for cell in cells])
    shown = np.array([float(cell.text) for cell in cells])
    return values, shown


def _number(page, element_id):
    element = page.find_element("id", element_id)
    return float(element.get_attribute("data-value")), float(element.text)


def _wait_inspect(page, layer, row, col, channel):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(page, TIMEOUT).until(lambda d: d.execute_script(
        "const s = window.convnet.state.inspect; return s !== null && s.layer === arguments[0] "
        "&& s.row === arguments[1] && s.col === arguments[2] && s.channel === arguments[3];",
        layer, row, col, channel))


def test_inspect_numbers_equal_conv_forward(page, drawn_seven, checkpoint):
    from convnet.training.trainer import load_model
    W1, b1, W2, b2 = list(load_model(checkpoint)[0].get_weights().values())[:4]
    X = drawn_seven[None, :, :, None]
    # Click a pixel of conv1/relu's channel 2 map in the Draw view, on the digit's bar.
    row, col, channel = 8, 14, 2
    canvas = page.find_element("css selector", f"#layers canvas[data-layer='conv1/relu']"
                                               f"[data-channel='{channel}']")
    size = canvas.size
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(page).move_to_element_with_offset(
        canvas, int((col + 0.5) * size["width"] / 28 - size["width"] / 2),
        int((row + 0.5) * size["height"] / 28 - size["height"] / 2)).click().perform()
    _wait_inspect(page, "conv1/relu", row, col, channel)
    assert page.find_element("id", "view-inspect").is_displayed()

    z = conv_forward(X, W1, b1.reshape(1, 1, 1, -1), _identity, padding="same")
    a = conv_forward(X, W1, b1.reshape(1, 1, 1, -1), _relu, padding="same")
    padded = np.pad(X[0], ((2, 2), (2, 2), (0, 0)))
    window = padded[row:row + 5, col:col + 5, 0]
    kernel = W1[:, :, 0, channel]
    for kind, expected in (("window", window), ("kernel", kernel),
                           ("products", window * kernel)):
        values, shown = _cells(page, kind)
        np.testing.assert_array_equal(values, expected.ravel().astype(np.float64))
        np.testing.assert_allclose(shown, expected.ravel(), atol=5.01e-5)
    output, output_text = _number(page, "inspect-output")
    assert output == float(z[0, row, col, channel])
    assert abs(output_text - z[0, row, col, channel]) <= 5.01e-5
    activated, _ = _number(page, "inspect-activated")
    assert activated == float(a[0, row, col, channel])
    bias, _ = _number(page, "inspect-bias")
    assert bias == float(b1[channel])
    total, _ = _number(page, "inspect-sum")
    assert total == pytest.approx(float((window * kernel).sum(dtype=np.float64)), rel=1e-9)
    assert total + bias == pytest.approx(output, rel=1e-5, abs=1e-6)
    screenshot(page, "inspect")

    # conv2 through the Inspect view's own map: choose the layer and channel, click a pixel.
    from selenium.webdriver.support.ui import Select
    Select(page.find_element("id", "inspect-layer")).select_by_value("conv2")
    Select(page.find_element("id", "inspect-channel")).select_by_value("3")
    big = page.find_element("id", "inspect-map")
    row, col = 4, 5
    ActionChains(page).move_to_element_with_offset(
        big, int((col + 0.5) * big.size["width"] / 10 - big.size["width"] / 2),
        int((row + 0.5) * big.size["height"] / 10 - big.size["height"] / 2)).click().perform()
    _wait_inspect(page, "conv2", row, col, 3)
    pooled = pool_forward(a, (2, 2), (2, 2), "max")
    z2 = conv_forward(pooled, W2, b2.reshape(1, 1, 1, -1), _identity, padding="valid")
    output, _ = _number(page, "inspect-output")
    np.testing.assert_allclose(output, z2[0, row, col, 3], rtol=1e-6, atol=1e-7)
    for c in range(6):
        values, _ = _cells(page, "window", c)
        np.testing.assert_array_equal(values, pooled[0, row:row + 5, col:col + 5, c].ravel())
    # The ReLU that follows conv2 in the network is shown too.
    activated, _ = _number(page, "inspect-activated")
    assert activated == max(output, 0.0)


def test_backprop_view_draws_gradients(page, drawn_seven):
    from selenium.webdriver.support.ui import WebDriverWait
    page.find_element("css selector", "#tabs button[data-view='backprop']").click()
    page.find_element("css selector", "#label-buttons button[data-label='7']").click()
    WebDriverWait(page, TIMEOUT).until(lambda d: d.execute_script(
        "const b = window.convnet.state.backprop; return b !== null && b.label === 7;"))
    text = page.find_element("id", "backprop-loss").text
    answer = page.execute_script("return window.convnet.state.backprop;")
    assert f"cross-entropy loss {answer['loss']:.4f}" in text
    # float32 arithmetic: the loss and the probability agree to about 1e-7.
    assert answer["loss"] == pytest.approx(-np.log(answer["probabilities"][7]), rel=1e-4,
                                           abs=1e-6)
    rows = page.find_elements("css selector", "#gradients .layer")
    assert len(rows) == len(answer["gradients"])
    kernels = page.find_elements("css selector", "#kernel-gradients canvas")
    assert len(kernels) == 12   # conv1's 6 kernels and their 6 gradients
    screenshot(page, "backprop")


def test_browse_view_shows_confusion_and_images(page, mnist):
    from selenium.webdriver.support.ui import WebDriverWait
    page.find_element("css selector", "#tabs button[data-view='browse']").click()
    WebDriverWait(page, 60).until(
        lambda d: len(d.find_elements("css selector", "#confusion td")) == 100)
    cell = page.find_element("css selector", "#confusion td[data-true='7'][data-predicted='7']")
    count = int(cell.text)
    assert count > 0.8 * int((mnist[3] == 7).sum())
    # The most frequent confusion: its cell lists exactly its images.
    cells = page.find_elements("css selector", "#confusion td.wrong")
    worst = max(cells, key=lambda td: int(td.text))
    worst.click()
    WebDriverWait(page, TIMEOUT).until(
        lambda d: len(d.find_elements("css selector", "#browse-images .thumb")) ==
        min(int(worst.text), 100))
    true, predicted = worst.get_attribute("data-true"), worst.get_attribute("data-predicted")
    captions = [thumb.text for thumb in page.find_elements("css selector",
                                                           "#browse-images .thumb")]
    assert all(caption.startswith(f"{predicted} ({true}) #") for caption in captions)
    page.find_element("id", "browse-mistakes").click()
    # The cell's images stay until the mistakes replace them: wait for the caption.
    WebDriverWait(page, TIMEOUT).until(
        lambda d: d.find_element("id", "browse-caption").text.startswith("every mistake"))
    thumbs = page.find_elements("css selector", "#browse-images .thumb")
    assert all("wrong" in thumb.get_attribute("class") for thumb in thumbs)
    screenshot(page, "browse")



def test_page_logs_no_errors(page, drawn_seven):
    """Nothing the page did was refused (content policy, a failed request) or threw."""
    severe = [entry["message"] for entry in page.get_log("browser")
              if entry["level"] == "SEVERE"]
    assert severe == []


def test_watch_view_draws_the_training_stream(checkpoint, page):
    """Events published by a training appear on the page: status, curve and filters."""
    from selenium.webdriver.support.ui import WebDriverWait

    from convnet.apps.page import serve
    from convnet.nn.lenet5 import LeNet5
    feed = serve.TrainingFeed()
    from convnet.training.trainer import load_model
    kernels = load_model(checkpoint)[0].get_weights()["conv1/kernel"]
    start = LeNet5(seed=0).get_weights()["conv1/kernel"]
    for step in range(1, 11):
        # The filters move from their initial values to the trained ones.
        mix = step / 10
        feed.publish(serve.training_event(50 * step, 1 + step // 6, 2.3 / step, 1 - 0.9 / step,
                                          (1 - mix) * start + mix * kernels))
    view = serve.NetworkView.from_checkpoint(checkpoint)
    server = serve.ServerThread(serve.build_app(view, feed=feed)).start()
    driver = page   # the same browser, on another server's page
    try:
        driver.get(server.url)
        driver.find_element("css selector", "#tabs button[data-view='watch']").click()
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: "step 500" in d.find_element("id", "watch-status").text)
        feed.publish(serve.training_event(550, 2, 0.2, 0.95, kernels))
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: "step 550" in d.find_element("id", "watch-status").text)
        status = driver.find_element("id", "watch-status").text
        assert status.startswith("epoch 2, step 550: loss 0.2000, validation-slice accuracy 95.0 %")
        chart = canvas_pixels(driver, driver.find_element("id", "watch-chart"))
        blue = (chart[:, :, 2] > 150) & (chart[:, :, 0] < 100) & (chart[:, :, 3] > 0)
        assert blue.sum() > 100   # the loss curve
        filters = driver.find_elements("css selector", "#watch-filters canvas")
        assert len(filters) == 6
        pixels = canvas_pixels(driver, filters[0])[:, :, :3].astype(int)
        assert pixels.shape[:2] == (5, 5) and pixels.std() > 0
        screenshot(driver, "watch")
    finally:
        server.stop()


def _free_port():
    import socket
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        return holder.getsockname()[1]


def _wait_for_line(lines, start, timeout=60):
    """The first line of the list a reader thread fills that starts with ``start``."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if line.startswith(start):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line starting with {start!r} in {lines}")


def test_watch_a_real_training_to_its_end_then_use_its_weights(page, mnist_slice, tmp_path):
    """`convnet train --serve` on 300 images, watched from the start to after the end."""
    import signal
    import subprocess
    import sys
    import threading

    from selenium.webdriver.support.ui import WebDriverWait

    from convnet.training.trainer import load_model
    data = mnist_slice(tmp_path / "MNIST.npz", 300, 100, 60)
    port = _free_port()
    # Run in tmp_path with relative paths: the page (and its screenshot) shows those.
    process = subprocess.Popen(
        [sys.executable, "-m", "convnet", "train", "--serve", "--serve-port", str(port),
         "--serve-every", "2", "--data", data.name, "--epochs", "2", "--processes", "1",
         "--out", "runs/lenet5-numpy"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, errors = [], []
    readers = [threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True),
               threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    driver = page   # the same browser, on the training's page
    try:
        url = f"http://127.0.0.1:{port}/"
        assert _wait_for_line(lines, "watch the training on") == \
            f"watch the training on {url} (Watch training)\n"
        driver.get(url)
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        driver.find_element("css selector", "#tabs button[data-view='watch']").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return window.convnet.watch.final !== null"))
        served = _wait_for_line(lines, "training finished; serving")
        assert served == f"training finished; serving http://127.0.0.1:{port} until Ctrl-C\n"
        watch = driver.execute_script("return window.convnet.watch")
        # 300 images in batches of 32: 10 steps an epoch; an event every 2 steps and at
        # the end of each epoch (steps 10 and 20 twice).
        assert [event["step"] for event in watch["events"]] == \
            [2, 4, 6, 8, 10, 10, 12, 14, 16, 18, 20, 20]
        final = watch["final"]
        assert (final["event"], final["epochs"], final["step"]) == ("finished", 2, 20)
        figures = _wait_for_line(lines, "validation accuracy")
        assert figures == f"validation accuracy {final['valid_accuracy']:.4f}, " \
                          f"test accuracy {final['test_accuracy']:.4f}\n"
        status = driver.find_element("id", "watch-status").text
        assert status.startswith("training finished after 2 epochs (20 steps): validation "
                                 f"accuracy {100 * final['valid_accuracy']:.2f} %")
        assert watch["log"] == [status]
        # The chart's axes say what they show, with tick values.
        labels = driver.find_element("id", "watch-chart").get_attribute("data-labels")
        labels = labels.split("|")
        for label in ("training step (counted over all epochs of this run)",
                      "cross-entropy loss", "accuracy (%)", "Loss", "Accuracy",
                      "accuracy on a validation slice", "final, whole validation split",
                      "0", "20", "50", "100"):
            assert label in labels
        # Each axis holds every value drawn on it.
        canvas = driver.find_element("id", "watch-chart")
        loss_ticks = [float(v) for v in canvas.get_attribute("data-loss-ticks").split("|")]
        step_ticks = [float(v) for v in canvas.get_attribute("data-step-ticks").split("|")]
        # (An epoch's end that follows an update at the same step has no new loss: null.)
        losses = [e["loss"] for e in watch["events"] if e["loss"] is not None]
        assert len(losses) == 10 and loss_ticks[0] == 0 and loss_ticks[-1] >= max(losses)
        assert step_ticks[0] == 0 and step_ticks[-1] >= 20
        chart = canvas_pixels(driver, canvas)[:, :, :3]
        for colour in ((43, 108, 176), (221, 107, 32), (47, 133, 90)):   # the three series
            assert (chart == colour).all(axis=2).sum() > 10, colour
        screenshot(driver, "watch-finished")

        # A page that connects again receives the history and the end again, and draws
        # neither twice.
        driver.execute_script("watchTraining()")
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: d.execute_script("return window.convnet.watch.source.readyState === 2"))
        again = driver.execute_script("return window.convnet.watch")
        assert len(again["events"]) == 12 and again["log"] == [status]
        assert driver.find_element("id", "checkpoint").text == \
            f"checkpoint: {final['checkpoint']}"

        # The page serves the trained weights: Draw and Browse answer as the checkpoint does.
        assert final["checkpoint"] == str(Path("runs/lenet5-numpy/checkpoint.npz"))
        model = load_model(tmp_path / final["checkpoint"])[0]
        driver.find_element("css selector", "#tabs button[data-view='draw']").click()
        draw_strokes(driver, driver.find_element("id", "draw"), SEVEN)
        wait_idle(driver)
        result = driver.execute_script("return window.convnet.state.result")
        image = np.array(result["image"], np.float32).reshape(1, 28, 28)
        np.testing.assert_allclose(result["probabilities"], model.predict_proba(image)[0],
                                   rtol=1e-5, atol=1e-6)
        driver.find_element("css selector", "#tabs button[data-view='browse']").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(
            "id", "browse-summary").text.startswith("validation split"))
        accuracy = final["valid_accuracy"]
        assert driver.find_element("id", "browse-summary").text.startswith(
            f"validation split: 100 images, accuracy {100 * accuracy:.2f} %")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=10)
    err = "".join(errors)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "convnet: interrupted"
    assert "Traceback" not in err


def test_watch_says_once_that_a_training_stopped(checkpoint, page):
    """A run that failed or was interrupted: its reason, once, however often the page connects."""
    from selenium.webdriver.support.ui import WebDriverWait

    from convnet.apps.page import serve
    feed = serve.TrainingFeed()
    for step in (5, 10):
        feed.publish(serve.training_event(step, 1, 1.0 / step, 0.5, None))
    feed.finish(serve.stopped_event(10, "interrupted (Ctrl-C)"))
    view = serve.NetworkView.from_checkpoint(checkpoint)
    server = serve.ServerThread(serve.build_app(view, feed=feed)).start()
    driver = page
    try:
        driver.get(server.url)
        driver.find_element("css selector", "#tabs button[data-view='watch']").click()
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: d.execute_script("return window.convnet.watch.final !== null"))
        for _ in range(2):
            driver.execute_script("watchTraining()")
            WebDriverWait(driver, TIMEOUT).until(lambda d: d.execute_script(
                "return window.convnet.watch.source.readyState === 2"))
        watch = driver.execute_script("return window.convnet.watch")
        line = "training stopped after 10 steps: interrupted (Ctrl-C)"
        assert watch["log"] == [line] and len(watch["events"]) == 2
        assert driver.find_element("id", "watch-status").text == line
    finally:
        server.stop()
