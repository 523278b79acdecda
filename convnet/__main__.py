"""``python -m convnet``: the ``convnet`` command."""
import sys

from convnet.apps.cli.cli import main

sys.exit(main())
