"""``python -m fanbench``: the same as the ``fanbench`` command."""

import sys

from fanbench.cli import main

sys.exit(main())
