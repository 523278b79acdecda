"""The servers' output: what a user must know, and nothing when a client goes away.

``convnet serve`` and the page of ``convnet train --serve`` run here in
child processes on loopback addresses only, as their users run them, and
their whole output is checked: a client that drops a request mid-body or a
Watch stream mid-way leaves no line at all, a busy port is one line and
status 2, Ctrl-C is ``convnet: interrupted`` and status 130.
"""
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from convnet.apps.page import serve
from convnet.errors import BadOptionError

TIMEOUT = 60


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from convnet.nn.lenet5 import LeNet5
    from convnet.nn.optim import Adam
    from convnet.training import trainer
    model = LeNet5(seed=0)
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": "mnist", "train_size": 8}
    history = {key: [2.3] for key in trainer.HISTORY_KEYS}
    history["epoch_seconds"] = []
    path = tmp_path_factory.mktemp("quiet") / "checkpoint.npz"
    trainer.save_checkpoint(path, model, Adam(model.parameters()), 0, settings, history,
                            [str(digit) for digit in range(10)])
    return path


def busy_port():
    """A socket listening on a free loopback port: the port is busy while it is open."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def free_port():
    with busy_port() as holder:
        return holder.getsockname()[1]


def start_serving(checkpoint, port):
    """``convnet serve`` on 127.0.0.1:port in a child process, returned once it answers."""
    command = [sys.executable, "-m", "convnet", "serve", "--checkpoint", str(checkpoint),
               "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"convnet serve did not start: {process.communicate()}")
            time.sleep(0.2)


def interrupt(process, signum=signal.SIGINT):
    """Send ``signum``; return (status, stdout, stderr) once the process has ended."""
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, out, err


def drop(connection, reset):
    """Close ``connection`` as a client that leaves does: with a reset, or an orderly close."""
    if reset:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def test_ctrl_c_stops_serve_with_status_130(checkpoint):
    port = free_port()
    status, out, err = interrupt(start_serving(checkpoint, port))
    assert (status, err) == (130, "convnet: interrupted\n")
    assert out == f"serving {checkpoint} on http://127.0.0.1:{port}/ (Ctrl-C stops)\n"


def test_sigterm_stops_serve_with_status_143(checkpoint):
    status, _, err = interrupt(start_serving(checkpoint, free_port()), signal.SIGTERM)
    assert (status, err) == (143, "convnet: terminated\n")


def test_requests_dropped_mid_body_leave_no_trace(checkpoint):
    port = free_port()
    process = start_serving(checkpoint, port)
    try:
        for reset in (False, True, False, True):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
                               + b"\x89PNG" * 1000)
            time.sleep(0.2)
            drop(connection, reset)
        time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=10) as answer:
            assert answer.status == 200   # the server goes on
    finally:
        status, _, err = interrupt(process)
    assert (status, err) == (130, "convnet: interrupted\n")


def test_a_busy_port_is_one_line_and_status_2(checkpoint):
    with busy_port() as holder:
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "convnet", "serve", "--checkpoint",
                               str(checkpoint), "--port", str(port)], capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 2
    assert done.stderr == (f"convnet: error: port {port} on 127.0.0.1 is in use by another "
                           "program; choose another port\n")


def test_a_busy_port_is_refused_before_saying_serving(checkpoint):
    with busy_port() as holder:
        done = subprocess.run([sys.executable, "-m", "convnet", "serve", "--checkpoint",
                               str(checkpoint), "--port", str(holder.getsockname()[1])],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert (done.returncode, done.stdout) == (2, "")


def test_a_busy_port_of_a_training_page_is_a_clear_error(capfd):
    import numpy as np

    from convnet.nn.lenet5 import LeNet5
    images, labels = np.zeros((4, 28, 28), np.float32), np.zeros(4, np.int64)
    with busy_port() as holder:
        port = holder.getsockname()[1]
        with pytest.raises(BadOptionError, match=f"^port {port} on 127.0.0.1 is in use by "
                                                 "another program; choose another port$"):
            serve.watch_training(LeNet5(seed=0), images, labels, port=port)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("port", [-1, 65536, True, "80"])
def test_ports_outside_the_range_are_refused(port):
    with pytest.raises(BadOptionError, match="port must be an integer from 0 to 65535"):
        serve.listening_socket("127.0.0.1", port)


# What `convnet train --serve` does with its page, under a flood of events: pages come,
# receive part of the backlog and leave, by a reset or an orderly close; one is still
# open when the training ends. Prints only how long stopping the page took.
WATCHED_TRAINING = textwrap.dedent("""
    import socket, struct, sys, threading, time
    import numpy as np
    from convnet.apps.page import serve
    from convnet.nn.lenet5 import LeNet5

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    holder.close()
    images, labels = np.zeros((4, 28, 28), np.float32), np.zeros(4, np.int64)
    watcher, server = serve.watch_training(LeNet5(seed=0), images, labels, port=port)
    kernels = watcher.view.first_conv.params["W"]
    event = serve.training_event(1, 1, 0.5, 0.5, kernels)
    for _ in range(2000):
        watcher.feed.publish(event)
    flooding = True

    def flood():
        while flooding:
            for _ in range(20):
                watcher.feed.publish(event)
            time.sleep(0.001)

    threading.Thread(target=flood, daemon=True).start()
    request = b"GET /api/train/events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
    for page in range(30):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(request)
        connection.recv(100)
        if page % 2:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
        time.sleep(0.05)
    still_open = socket.create_connection(("127.0.0.1", port), timeout=10)
    still_open.sendall(request)
    still_open.recv(100)
    flooding = False
    started = time.monotonic()
    server.stop()
    print(f"{time.monotonic() - started:.2f}")
""")


def test_dropped_watch_streams_leave_no_trace_and_the_page_stops_at_once():
    done = subprocess.run([sys.executable, "-c", WATCHED_TRAINING], capture_output=True,
                          text=True, timeout=2 * TIMEOUT, check=False)
    assert done.stderr == ""
    assert float(done.stdout) < 1.5


def test_training_events_are_json_for_every_network():
    import json

    import numpy as np

    from convnet.apps.page.watch import training_event
    rng = np.random.default_rng(0)
    colour = rng.normal(size=(3, 3, 3, 4))
    event = training_event(5, 1, float("nan"), 0.5, colour)
    text = json.dumps(event, allow_nan=False)   # NaN is no JSON: a diverged loss is null
    assert json.loads(text)["loss"] is None and event["kernel_shape"] == [3, 3, 3, 4]
    assert len(event["kernels"]) == 4 and len(event["kernels"][0]) == 27
    np.testing.assert_allclose(event["kernels"][2], colour[..., 2].ravel(), atol=1e-3)
    dense_only = training_event(5, 1, 0.25, None, None)
    assert (dense_only["kernels"], dense_only["kernel_shape"], dense_only["loss"]) == ([], [], 0.25)
