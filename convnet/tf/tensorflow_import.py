"""Import TensorFlow without the log lines it prints before its logging starts.

``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's C++ log once absl's logging is
set up, but a few lines are written to the process's standard error while the
shared libraries load, before that: absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" and, on processors
where oneDNN is enabled (Intel with AVX-512, for one), port.cc's "oneDNN
custom operations are on". The level cannot reach them, and turning oneDNN
off (``TF_ENABLE_ONEDNN_OPTS=0``) would change TensorFlow's numerics.

``import_tensorflow`` therefore points file descriptor 2 at a temporary file
while TensorFlow is imported, then writes back every line that is not one of
TensorFlow's log lines: nothing of TensorFlow's computation changes, and
anything else written there meanwhile (a warning of Python's) is written
back to descriptor 2, where it was headed. With ``TF_CPP_MIN_LOG_LEVEL=0``
(``convnet --verbose``) nothing is held back.
"""
import os
import re
import sys
import tempfile

# TensorFlow's and absl's C++ log lines: "I0000 00:00:...", "W1204 13:30:01...", and
# absl's note on where the early messages go.
_LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::")


def tensorflow_logs_wanted():
    """True when the environment asks for TensorFlow's every log line (level 0)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() == "0"


def without_tensorflow_logs(text):
    """``text`` (what standard error received, str or bytes) less TensorFlow's log lines."""
    if isinstance(text, bytes):
        return without_tensorflow_logs(text.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape")
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _LOG_LINE.match(line))


def import_tensorflow():
    """Return the ``tensorflow`` module, imported without its early log lines.

    Raises
    ------
    ImportError
        When TensorFlow is not installed.
    """
    if "tensorflow" in sys.modules or tensorflow_logs_wanted():
        import tensorflow
        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            # The bytes go back where they were headed: descriptor 2 itself.
            kept = without_tensorflow_logs(held.read())
            while kept:
                kept = kept[os.write(2, kept):]
    return tensorflow
