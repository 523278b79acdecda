"""The server of ``convnet serve``: the Starlette application, its routes and a server thread.

The server is stateless: each request carries the drawn or uploaded image
(PNG or JPEG bytes), which goes through the same preparation and checks as
``convnet predict`` (``NetworkView.prepare``: a digit for a grey model, the
resized picture for a colour one), or names an image of the dataset by
split and index (``?split=valid&index=12``, no body). Request
bodies are limited to ``MAX_BODY_BYTES``; only the page's own files, read
into memory once from a fixed table of names, are served, so no path taken
from a request reaches the file system.

:func:`build_app` returns the ASGI application and prints nothing; the
answers come from :mod:`convnet.apps.page.views`.

The server's output stays for what its user must know. The address is
bound by :func:`listening_socket` before anything says the page is served,
so a busy port or an unknown host is one ``BadOptionError``. A client that
goes away mid-request (a closed tab, a dropped Watch stream) ends its
request without a word: neither the application nor asyncio logs it. Ctrl-C
stops :func:`run` and reaches its caller as ``KeyboardInterrupt``.
"""
import asyncio
import errno
import io
import json
import logging
import os
import socket
import threading
from pathlib import Path

from convnet.apps.page.views import backprop_payload, predict_payload
from convnet.errors import BadOptionError, StorageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# A 280x280 canvas is about 10 kB as a PNG; a phone photo a few MB.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
WEB_DIR = Path(__file__).with_name("web")
# The only files the server sends: URL name -> (file in WEB_DIR, media type).
ASSETS = {
    "paint.js": ("paint.js", "text/javascript; charset=utf-8"),
    "views.js": ("views.js", "text/javascript; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE = "index.html"
# The page loads its own script and style sheet and talks to this server only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
# Names by which a server on the loopback interface is reached.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def host_warning(host):
    """Return a warning for a ``host`` other than the loopback interface, else None."""
    if host in LOOPBACK_HOSTS:
        return None
    return (f"warning: serving on {host}, not {DEFAULT_HOST}: other machines that reach this "
            "address can use the page (it has no password)")


# ---------------------------------------------------------------- the application
class RequestError(ValueError):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def _read_assets():
    """Read the page's files into memory: {URL name: (bytes, media type)}."""
    assets = {name: ((WEB_DIR / filename).read_bytes(), media)
              for name, (filename, media) in ASSETS.items()}
    assets[PAGE] = ((WEB_DIR / PAGE).read_bytes(), "text/html; charset=utf-8")
    return assets


def _int_query(request, name, required=True):
    """Read query parameter ``name`` as an int (None when absent and not required)."""
    text = request.query_params.get(name)
    if text is None:
        if required:
            raise RequestError(f"query parameter {name} is required")
        return None
    try:
        return int(text)
    except ValueError:
        raise RequestError(f"query parameter {name} must be an integer, received {text!r}") \
            from None


async def _read_image(request, max_bytes, view, browser=None):
    """The image a request names: a dataset's (``?split=&index=``), or the body's, prepared.

    The body (a picture file) is prepared for the model's input as
    ``convnet predict`` prepares it (``view.prepare``).
    """
    if request.query_params.get("split") is not None:
        if browser is None:
            raise RequestError("no data set was loaded, so no image of it can be shown", 404)
        from starlette.concurrency import run_in_threadpool

        # The first image of a split loads the dataset: not on the event loop.
        return await run_in_threadpool(browser.image, request.query_params["split"],
                                       _int_query(request, "index"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(f"request body is {declared} bytes; the limit is {max_bytes}", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(f"request body is larger than the limit of {max_bytes} bytes",
                               413)
    if not body:
        raise RequestError("the request must carry an image (PNG or JPEG bytes) as its body")
    return view.prepare(io.BytesIO(bytes(body)), max_pixels=MAX_IMAGE_PIXELS,
                        label="in the request body")


def build_app(view, browser=None, feed=None, checkpoint=None, max_body_bytes=MAX_BODY_BYTES,
              allowed_hosts=None):
    """Return the Starlette application of ``convnet serve``.

    Parameters
    ----------
    view : NetworkView
        The network shown.
    browser : SplitBrowser, optional
        Serves the Browse view; without it that view says no data was given.
    feed : TrainingFeed, optional
        Source of the Watch-training stream (``convnet train --serve``).
    checkpoint : str, optional
        Shown on the page.
    max_body_bytes : int
        Largest request body accepted (413 beyond).
    allowed_hosts : sequence of str, optional
        Host names the requests must be addressed to (400 otherwise), e.g.
        ``LOOPBACK_NAMES`` for a server on 127.0.0.1: a web page elsewhere
        that renames its own address to 127.0.0.1 (DNS rebinding) then
        cannot read the answers. None accepts any.

    Every answer forbids the browser to load anything from elsewhere
    (``Content-Security-Policy``) or to guess content types.

    Routes
    ------
    ``GET /`` the page; ``GET /assets/{name}`` its script and style sheet;
    ``GET /api/model``; ``POST /api/predict``, ``POST /api/inspect?layer=&row=&col=&channel=``,
    ``POST /api/backprop?label=`` with an image as the body, or with
    ``&split=&index=`` naming an image of the dataset instead;
    ``GET /api/browse?split=``, ``GET /api/browse/images?split=&true=&predicted=``
    (either may be left out) and ``GET /api/browse/mistakes?split=``;
    ``GET /api/train/events`` (server-sent events).
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    assets = _read_assets()

    def asset(name):
        content, media = assets[name]
        return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})

    def api(handler):
        async def endpoint(request):
            try:
                result = await handler(request)
            except RequestError as error:
                return JSONResponse({"error": str(error)}, status_code=error.status)
            except (ValueError, FileNotFoundError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            return JSONResponse(result)
        return endpoint

    async def page(request):
        return asset(PAGE)

    async def static(request):
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"error": "not found"}, status_code=404)
        return asset(name)

    async def model_info(request):
        final = feed.final if feed is not None else None
        shown = checkpoint
        if final is not None and final.get("checkpoint"):
            shown = final["checkpoint"]   # the run is over: its weights are served
        return {**await run_in_threadpool(view.about), "checkpoint": shown,
                "browse": browser is not None, "training": feed is not None}

    async def predict(request):
        image = await _read_image(request, max_body_bytes, view, browser)
        return await run_in_threadpool(predict_payload, view, image)

    async def inspect(request):
        layer = request.query_params.get("layer")
        if layer is None:
            raise RequestError("query parameter layer is required")
        row, col, channel = (_int_query(request, name) for name in ("row", "col", "channel"))
        image = await _read_image(request, max_body_bytes, view, browser)
        return await run_in_threadpool(view.inspect, image, layer, row, col, channel)

    async def backprop(request):
        label = _int_query(request, "label")
        image = await _read_image(request, max_body_bytes, view, browser)
        return await run_in_threadpool(backprop_payload, view, image, label)

    def _browser():
        if browser is None:
            raise RequestError("no data set was loaded: start `convnet serve` with MNIST "
                               "cached (`convnet data`) or --data PATH", 404)
        return browser

    async def browse(request):
        split = request.query_params.get("split", "valid")
        return await run_in_threadpool(_browser().summary, split)

    async def browse_images(request):
        split = request.query_params.get("split", "valid")
        true, predicted = _int_query(request, "true", False), _int_query(request, "predicted",
                                                                           False)
        return await run_in_threadpool(_browser().cell, split, true, predicted)

    async def browse_mistakes(request):
        split = request.query_params.get("split", "valid")
        return await run_in_threadpool(_browser().mistakes, split)

    async def train_events(request):
        if feed is None:
            return JSONResponse({"error": "no training is running: start one with "
                                          "`convnet train --serve`"}, status_code=404)

        async def stream():
            count = _resumed_from(request, feed.count)
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                events, count, final = await run_in_threadpool(feed.read, count, 1.0)
                # One write for all the events that came: a page that goes away while a
                # backlog streams must not leave thousands of writes to a closed connection.
                first = count - len(events) + 1
                text = "".join(_event_text(event, first + k) for k, event in enumerate(events))
                if final is not None:
                    # The run is over: the history is sent, then its end, then nothing.
                    yield text + _event_text(final, "end")
                    return
                if feed.closed:
                    if text:
                        yield text
                    return
                yield text or ": waiting\n\n"
                await asyncio.sleep(0)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", page),
        Route("/assets/{name}", static),
        Route("/api/model", api(model_info)),
        Route("/api/predict", api(predict), methods=["POST"]),
        Route("/api/inspect", api(inspect), methods=["POST"]),
        Route("/api/backprop", api(backprop), methods=["POST"]),
        Route("/api/browse", api(browse)),
        Route("/api/browse/images", api(browse_images)),
        Route("/api/browse/mistakes", api(browse_mistakes)),
        Route("/api/train/events", train_events),
    ]
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    middleware.insert(0, Middleware(_QuietDisconnects))
    application = Starlette(routes=routes, middleware=middleware)
    # How ServerThread.stop ends the open Watch streams, which would otherwise hold the
    # server until its graceful shutdown gives up on them.
    application.state.end_streams = feed.close if feed is not None else None
    return application


def _event_text(event, number):
    """One server-sent event: its number (the page's ``Last-Event-ID``) and its JSON."""
    return f"id: {number}\ndata: {json.dumps(event, allow_nan=False)}\n\n"


def _resumed_from(request, published):
    """How many events a reconnecting page has already received (0 for a new page).

    A browser reconnecting after a dropped stream sends the number of the last
    event it received; the stream goes on from there, so the page never draws
    an event twice. A number it cannot have received starts from the beginning.
    """
    text = request.headers.get("last-event-id", "")
    if text.isdigit() and int(text) <= published:
        return int(text)
    return 0


def _is_disconnect(error):
    """Whether ``error`` only says that the client went away (a group of such errors too)."""
    from anyio import BrokenResourceError, ClosedResourceError
    from starlette.requests import ClientDisconnect

    group = getattr(error, "exceptions", None)
    if group is not None:
        return all(_is_disconnect(member) for member in group)
    return isinstance(error, (ClientDisconnect, ClosedResourceError, BrokenResourceError,
                              ConnectionError))


class _QuietDisconnects:
    """ASGI middleware: a request whose client went away ends without a traceback.

    Nobody is left to answer, and a traceback for every closed tab or
    dropped connection in the server's output would hide the errors that
    matter. Any other exception goes on to be reported.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        except Exception as error:
            if scope["type"] != "http" or not _is_disconnect(error):
                raise


class _SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every answer."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(name.encode("latin-1"), value.encode("latin-1"))
                            for name, value in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------- serving
class _WritesToClosedConnections(logging.Filter):
    """Drops asyncio's warning about writes to a connection its client has closed."""

    def filter(self, record):
        return record.getMessage() != "socket.send() raised exception."


def _quiet_asyncio():
    """Keep asyncio's log free of the writes that follow a client's leaving, once per process."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(item, _WritesToClosedConnections) for item in logger.filters):
        logger.addFilter(_WritesToClosedConnections())


def listening_socket(host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Bind ``host``:``port`` and listen; return the socket for :func:`run` or :class:`ServerThread`.

    Binding before the server starts (and before anything says it serves)
    turns a busy port or a host that is not this machine's into one clear
    error instead of a server that starts and fails.

    Parameters
    ----------
    host : str
        A name or address of this machine (``::1`` and other addresses with
        a colon are IPv6).
    port : int
        0 to 65535; 0 lets the system pick a free port.

    Returns
    -------
    socket.socket

    Raises
    ------
    BadOptionError
        Naming the port or the host and what went wrong.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadOptionError(f"port must be an integer from 0 to 65535, received {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            # A port left in TIME_WAIT by the previous run can be bound again at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        if isinstance(error, socket.gaierror):
            problem = f"host {host!r} is not a known name or address ({error.strerror})"
        elif error.errno == errno.EADDRINUSE:
            problem = f"port {port} on {shown} is in use by another program; choose another port"
        elif error.errno == errno.EACCES:
            problem = (f"port {port} on {shown} needs privileges this user lacks (ports below "
                       "1024 usually do); choose another port")
        elif error.errno == errno.EADDRNOTAVAIL:
            problem = f"host {host!r} is not an address of this machine"
        else:
            problem = f"cannot listen on {shown}:{port} ({error.strerror or error})"
        raise BadOptionError(problem) from None
    return sock


def _server(app):
    """A uvicorn server for ``app`` that logs warnings and errors only."""
    import uvicorn

    _quiet_asyncio()
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


class ServerThread:
    """An ASGI application served by uvicorn in a background thread.

    Parameters
    ----------
    app : ASGI application
    host : str
    port : int
        0 picks a free port; ``url`` tells which.

    Raises
    ------
    BadOptionError
        From :func:`listening_socket`, when the address cannot be bound.
    """

    def __init__(self, app, host=DEFAULT_HOST, port=0):
        self._socket = listening_socket(host, port)
        port = self._socket.getsockname()[1]
        self._server = _server(app)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)
        # build_app's applications say how to end their open streams.
        self._end_streams = getattr(getattr(app, "state", None), "end_streams", None)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"

    def start(self, timeout=20.0):
        """Start serving; return once the server listens.

        Raises
        ------
        StorageError
            If it has not started within ``timeout`` seconds.
        """
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._socket.close()
                raise StorageError(f"the server could not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout=10.0):
        """End the open streams, stop serving and wait for the thread (at most ``timeout`` s)."""
        if self._end_streams is not None:
            self._end_streams()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()


def run(app, host=DEFAULT_HOST, port=DEFAULT_PORT, sock=None):
    """Serve ``app`` with uvicorn until interrupted.

    Parameters
    ----------
    app : ASGI application
    host, port : str, int
        Where to listen, unless ``sock`` is given.
    sock : socket.socket, optional
        From :func:`listening_socket`: a caller that binds first can say
        where the page is knowing that the address is free.

    Raises
    ------
    BadOptionError
        When the address cannot be bound (see :func:`listening_socket`).
    KeyboardInterrupt
        On Ctrl-C, once the server has stopped.
    """
    if sock is None:
        sock = listening_socket(host, port)
    # Server.run, unlike uvicorn.run, lets the Ctrl-C it received reach the caller.
    _server(app).run(sockets=[sock])
