"""``convnet serve``: a local web page that shows what the network computes.

The page (``convnet/apps/page/web/``: plain HTML, CSS and JavaScript, nothing
fetched from elsewhere) has five views: Draw (a digit drawn with the mouse or
a finger, every layer's output and the ten probabilities), Inspect (the
arithmetic of one pixel of a convolution's output), Back-propagate (the
gradient of the loss with respect to every layer's output and to the first
layer's kernels), Browse (the confusion matrix and the images of each cell)
and Watch training (loss, accuracy and first-layer filters streamed by
``convnet train --serve``).

This module is the page's face; the work is done in four rooms:

- :mod:`convnet.apps.page.views`: :class:`NetworkView` (every number comes
  from the model's own ``outputs`` and ``output_gradients``) and the JSON
  payloads;
- :mod:`convnet.apps.page.browse`: :class:`SplitBrowser`, the Browse view's
  split and the model's predictions on it;
- :mod:`convnet.apps.page.server`: the Starlette application
  (:func:`build_app`), :func:`listening_socket` (the address bound before
  anything says the page is served), :class:`ServerThread` and :func:`run`
  (Ctrl-C reaches the caller as ``KeyboardInterrupt``);
- :mod:`convnet.apps.page.watch`: the training feed behind
  ``convnet train --serve`` (:func:`watch_training`).

The command line reaches them through this module's names (``serve.run``,
``serve.watch_training``, ...), which is also where tests replace them.
"""
from convnet.apps.page.browse import SplitBrowser, browser_for  # noqa: F401
from convnet.apps.page.server import (  # noqa: F401 -- the page's public names
    LOOPBACK_NAMES,
    WEB_DIR,
    ServerThread,
    build_app,
    host_warning,
    listening_socket,
    run,
)
from convnet.apps.page.views import (  # noqa: F401
    NetworkView,
    drawing_codes,
    sign_codes,
)
from convnet.apps.page.watch import (  # noqa: F401
    TrainingFeed,
    TrainingWatcher,
    finished_event,
    stopped_event,
    training_event,
    watch_training,
)
