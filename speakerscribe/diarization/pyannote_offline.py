"""Import before pyannote.audio: it keeps pyannote's usage telemetry off.

pyannote.audio 4 sends usage telemetry to otel.pyannote.ai unless told not to. This server
runs offline and must not phone home. A PYANNOTE_METRICS_ENABLED set before pyannote.audio
is first imported is the user's choice and is kept; once pyannote.audio is imported the
variable holds pyannote's own default (on), which is turned off.
"""

from __future__ import annotations

import os
import sys

if "pyannote.audio" in sys.modules or "PYANNOTE_METRICS_ENABLED" not in os.environ:
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
