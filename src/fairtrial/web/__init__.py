"""`fairtrial ui`: a local, read-only web dashboard over one workspace (FastAPI + uvicorn).

Everything it shows comes from the application layer (`fairtrial.app.dashboard`): status, stage-run
records, manifests, logs, the analysis. It imports nothing else of fairtrial but its errors (see
tests/test_architecture.py). The security model is in docs/ui.md and in `app.py`.
"""

from fairtrial.web.app import create_app
from fairtrial.web.server import serve

__all__ = ["create_app", "serve"]
