"""An OpenAI-compatible HTTP server over the inference engine, and a web chat page.

`create_app(loader, settings)` builds the FastAPI application; `parrot serve` runs it with
uvicorn. One worker thread owns the engine (continuous batching); request handlers talk to
it through queues. FastAPI is imported here, so `import parrot.serve` needs it installed.
"""

from parrot.serve.app import ServeSettings, create_app
from parrot.serve.worker import Loaded

__all__ = ["Loaded", "ServeSettings", "create_app"]
