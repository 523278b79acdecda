"""How a process of ``convnet`` stops when it is told to: SIGTERM as an exception.

The command (``convnet.apps.cli.cli``) and the processes a run starts
(``convnet.worker``) both turn SIGTERM into :class:`Terminated`, so that a
terminated run unwinds as Ctrl-C does and closes its files on the way out.
"""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so files and child processes are closed.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that code catching
    ``Exception`` to report a failure lets it through.
    """
