"""fanbench reports: the run-directory format, loss arithmetic, analysis, charts.

Reports read run directories only; nothing here imports the load generator.
"""

import sys
from pathlib import Path

# aws_limits (the one module of AWS constants) lives with the deployable handlers.
_HANDLERS = str(Path(__file__).resolve().parents[1] / "handlers")
if _HANDLERS not in sys.path:
    sys.path.insert(0, _HANDLERS)
