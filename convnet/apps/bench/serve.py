"""Measure ``convnet serve``: latency under load, and from a pen stroke to the page's update.

``python -m convnet.apps.bench.serve [--clients N] [--seconds S] [--digits N]
[--skip-load | --skip-draw] [--checkpoint PATH]``.

Load: ``convnet serve`` runs in its own process on 127.0.0.1 (a free port,
never another address); ``--clients`` threads each keep one connection and
post a drawn digit to ``/api/predict`` (what the Draw view sends on every
stroke) as fast as answers come, for ``--seconds``. Every answer must be a
200 with ten probabilities; anything else counts as an error. Prints the
request count, errors, throughput and the p50 / p95 / p99 / max latency.

Draw: headless Chromium (Debian's chromium and chromium-driver, through
Selenium) opens the page on the same server with no other load and draws
digits with pointer events at 60 moves a second. The page records, for every
update, the time from the first pointer event not yet shown to the end of
drawing the answer that includes it (``window.convnet.stats.latencies``).
Prints their p50 / p95 / max against the 100 ms target.

Both are bounded: at most 100 clients and 120 s of load, a few hundred strokes.
"""
import http.client
import io
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MAX_CLIENTS = 100
MAX_SECONDS = 120.0
TARGET_MS = 100.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def digit_png(size=280):
    """PNG bytes of a '7' drawn as the page's canvas draws it: white strokes on black."""
    from PIL import Image, ImageDraw
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(70, 60), (210, 60), (180, 130), (140, 230)], fill=255, width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint, port):
    """Start ``convnet serve`` on 127.0.0.1:port in a child process; return it once it answers."""
    command = [sys.executable, "-m", "convnet", "serve", "--checkpoint", str(checkpoint),
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/model")
            if connection.getresponse().status == 200:
                connection.close()
                return process
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"convnet serve stopped: {process.stderr.read().strip()}")
        if time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError("convnet serve did not answer within 60 s")
        time.sleep(0.2)


def percentiles(values_ms):
    """p50, p95, p99 and max of a list of milliseconds (NaN when empty)."""
    if not values_ms:
        return {key: float("nan") for key in ("p50", "p95", "p99", "max")}
    values = np.asarray(values_ms)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max())}


def load_test(port, clients, seconds):
    """Run ``clients`` threads posting a digit to /api/predict for ``seconds``.

    Returns
    -------
    dict
        ``latencies`` (ms of every successful request), ``errors`` (count),
        ``error_examples`` (up to 5 descriptions) and ``elapsed`` (s).
    """
    body = digit_png()
    latencies, errors, examples = [], [0], []
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, failed = [], 0
        start_line.wait()
        while time.perf_counter() < stop_at[0]:
            started = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body=body,
                                   headers={"Content-Type": "image/png"})
                answer = connection.getresponse()
                content = answer.read()
                ok = answer.status == 200 and content.count(b'"probabilities"') == 1
                problem = None if ok else f"status {answer.status}: {content[:120]!r}"
            except (OSError, http.client.HTTPException) as error:
                problem = f"{type(error).__name__}: {error}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if problem is None:
                mine.append(1000 * (time.perf_counter() - started))
            else:
                failed += 1
                with lock:
                    if len(examples) < 5:
                        examples.append(problem)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors[0], "error_examples": examples,
            "elapsed": time.perf_counter() - began}


def draw_test(url, digits):
    """Draw ``digits`` 7s in headless Chromium; return what the page measured.

    Returns
    -------
    latencies : list of float
        Milliseconds from a pointer event to the update that shows it.
    parts : list of dict
        Each update's ``encode``, ``server`` and ``draw`` milliseconds.
    shown : str
        The prediction the page shows at the end.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.mouse_button import MouseButton
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="convnet-bench-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        canvas = driver.find_element("id", "draw")
        half = canvas.size["width"] / 2
        scale = canvas.size["width"] / 280
        path = [(70, 60), (210, 60), (180, 130), (140, 230)]
        for _ in range(digits):
            driver.find_element("id", "clear").click()
            # A hand moving at 60 events a second: one pointer move every 16 ms.
            actions = ActionBuilder(driver, duration=16)
            pointer = actions.pointer_action
            pointer.move_to(canvas, int(path[0][0] * scale - half), int(path[0][1] * scale - half))
            pointer.pointer_down(MouseButton.LEFT)
            for (xa, ya), (xb, yb) in itertools.pairwise(path):
                count = max(1, int(max(abs(xb - xa), abs(yb - ya)) / 6))
                for k in range(1, count + 1):
                    x, y = xa + (xb - xa) * k / count, ya + (yb - ya) * k / count
                    pointer.move_to(canvas, int(x * scale - half), int(y * scale - half))
            pointer.pointer_up(MouseButton.LEFT)
            actions.perform()
            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script("return !window.convnet.state.busy"))
        shown = driver.find_element("id", "prediction").text
        stats = driver.execute_script("return window.convnet.stats")
        return stats["latencies"], stats["parts"], shown
    finally:
        driver.quit()


def default_checkpoint(folder):
    """runs/lenet5-numpy/checkpoint.npz if it exists, else an untrained LeNet-5 saved in ``folder``.

    The latency does not depend on the weights, only on the layers.
    """
    path = Path("runs/lenet5-numpy/checkpoint.npz")
    if path.is_file():
        return path, "runs/lenet5-numpy/checkpoint.npz"
    from convnet.nn.lenet5 import LeNet5
    from convnet.training.trainer import save_model
    path = Path(folder) / "untrained.npz"
    save_model(path, LeNet5(seed=0))
    return path, "an untrained LeNet-5 (no runs/lenet5-numpy/checkpoint.npz)"


def main():
    """Run the draw test, then the load test; return the exit status (1 if a request failed)."""
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint served (default: runs/lenet5-numpy/checkpoint.npz, "
                             "else an untrained LeNet-5)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of the load test (default 30)")
    parser.add_argument("--digits", type=int, default=10,
                        help="digits drawn in the browser (default 10)")
    parser.add_argument("--skip-load", action="store_true", help="only the draw test")
    parser.add_argument("--skip-draw", action="store_true", help="only the load test")
    args = parser.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}, received {args.clients}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}], received {args.seconds}")
    if not 1 <= args.digits <= 50:
        parser.error(f"--digits must be between 1 and 50, received {args.digits}")

    with tempfile.TemporaryDirectory() as folder:
        if args.checkpoint:
            checkpoint, described = Path(args.checkpoint), args.checkpoint
        else:
            checkpoint, described = default_checkpoint(folder)
        port = free_port()
        server = start_server(checkpoint, port)
        try:
            print(f"convnet serve on 127.0.0.1:{port}, serving {described}; "
                  f"{os.cpu_count()} processors, load average "
                  f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            if not args.skip_draw:
                if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
                    print(f"draw test skipped: it needs {CHROMIUM} and {CHROMEDRIVER} "
                          "(apt-get install chromium chromium-driver)")
                else:
                    latencies, parts, shown = draw_test(f"http://127.0.0.1:{port}/",
                                                        args.digits)
                    stats = percentiles(latencies)
                    verdict = "meets" if stats["p95"] <= TARGET_MS else "misses"
                    print(f"draw: {len(latencies)} updates while drawing {args.digits} digits "
                          f"(last read as {shown}): stroke to update p50 {stats['p50']:.0f} ms, "
                          f"p95 {stats['p95']:.0f} ms, max {stats['max']:.0f} ms; "
                          f"p95 {verdict} the {TARGET_MS:.0f} ms target", flush=True)
                    medians = {key: float(np.median([part[key] for part in parts]))
                               for key in ("encode", "server", "draw")}
                    print(f"  one update, medians: encode the drawing {medians['encode']:.1f} ms, "
                          f"request and answer {medians['server']:.1f} ms, draw the answer "
                          f"{medians['draw']:.1f} ms", flush=True)
            if not args.skip_load:
                result = load_test(port, args.clients, args.seconds)
                stats = percentiles(result["latencies"])
                count = len(result["latencies"]) + result["errors"]
                print(f"load: {args.clients} clients for {result['elapsed']:.1f} s, POST "
                      f"/api/predict: {count} requests, {result['errors']} errors, "
                      f"{count / result['elapsed']:.0f} requests/s; latency p50 "
                      f"{stats['p50']:.0f} ms, p95 {stats['p95']:.0f} ms, p99 "
                      f"{stats['p99']:.0f} ms, max {stats['max']:.0f} ms", flush=True)
                for example in result["error_examples"]:
                    print(f"  error: {example}")
                if result["errors"]:
                    return 1
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
