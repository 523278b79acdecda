"""The mistakes a user can make, as exceptions the command line reports in one line.

Everything the ``convnet`` command reads from its user (options, data files,
checkpoints, images, the run folder) is checked where it is read, and a
problem raises one of the classes below with a message that names the thing
at fault and what was expected. ``convnet.apps.cli.cli`` prints those as
``convnet: error: <message>`` with exit status 2; any other exception is a bug
of the program and keeps its traceback.

Each class also derives from the built-in exception its callers caught
before it existed (``ValueError`` for a bad value, ``OSError`` for a file
the system refused), so library code that catches those keeps working.

A message may speak of the caller's options by name (the fields of
``convnet.TrainConfig``, say): it marks each as ``{field}`` and lists it in
``fields``. ``str(error)`` reads the plain names (``batch_size must be a
positive integer``); a front end shows them its own way with ``render``
(the command line as flags: ``--batch-size must be a positive integer``).
"""


class UserError(Exception):
    """A problem with what the user asked for or supplied, not with the program.

    Parameters
    ----------
    message : str
        One line; each name of ``fields`` appears in it as ``{name}``.
    fields : sequence of str
        The options the message speaks of.
    """

    def __init__(self, message="", fields=()):
        self.template = str(message)
        self.fields = tuple(fields)
        super().__init__(self.render(lambda name: name))

    def render(self, spell):
        """The message with each ``{field}`` written as ``spell(field)``."""
        text = self.template
        for name in self.fields:
            text = text.replace("{" + name + "}", spell(name))
        return text


class BadOptionError(UserError, ValueError):
    """A command-line option, or a combination of them, cannot be honoured."""


class BadDataError(UserError, ValueError):
    """A data file exists but is unreadable, corrupt, or holds values it may not hold."""


class MissingDataError(BadDataError, FileNotFoundError):
    """A data file or folder does not exist."""


class BadCheckpointError(UserError, ValueError):
    """A checkpoint or weights file is missing, unreadable, or not what it claims to be."""


class BadImageError(UserError, ValueError):
    """An image file cannot be read, is too large, or shows nothing to classify."""


class RunFolderBusyError(UserError):
    """Another process holds the run folder, or it holds a run that would be overwritten."""


class StorageError(UserError, OSError):
    """The system refused to write a file (full disk, no permission): the message names it."""


class TrainingDivergedError(UserError, ArithmeticError):
    """The loss or the weights stopped being finite numbers during training."""
