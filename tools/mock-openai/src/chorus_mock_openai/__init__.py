"""chorus-mock-openai: a fast, faithful OpenAI-compatible streaming upstream.

Build the ASGI app with `create_app(MockConfig(...))`, or run
`python -m chorus_mock_openai --port 8090`. See the package README for the
per-request overrides, fault modes and the `/_mock` control API.
"""

from chorus_mock_openai.app import MockOpenAI, create_app
from chorus_mock_openai.config import DEFAULT_MODELS, MockConfig
from chorus_mock_openai.faults import Fault
from chorus_mock_openai.recorder import Outcome
from chorus_mock_openai.server import bind_socket, build_server
from chorus_mock_openai.tokens import MOCK_TEXT, completion_text, count_prompt_tokens

__all__ = [
    "DEFAULT_MODELS",
    "MOCK_TEXT",
    "Fault",
    "MockConfig",
    "MockOpenAI",
    "Outcome",
    "bind_socket",
    "build_server",
    "completion_text",
    "count_prompt_tokens",
    "create_app",
]
