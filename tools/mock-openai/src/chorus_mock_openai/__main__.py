"""Command line: `python -m chorus_mock_openai --host 127.0.0.1 --port 8090 …`.

Prints `chorus-mock-openai listening on http://HOST:PORT` once the socket is
bound (useful with `--port 0`), then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chorus_mock_openai.app import create_app
from chorus_mock_openai.config import DEFAULT_MODELS, MockConfig
from chorus_mock_openai.server import bind_socket, build_server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m chorus_mock_openai",
        description="Fast, faithful OpenAI-compatible mock upstream.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before first token")
    parser.add_argument("--inter-token-ms", type=float, default=0.0, help="delay between tokens")
    parser.add_argument("--tokens", type=int, default=16, help="completion length in tokens")
    parser.add_argument(
        "--model-list",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated model ids; '*' accepts any model",
    )
    parser.add_argument(
        "--fault-after", type=int, default=2, help="tokens sent before a mid-stream fault"
    )
    parser.add_argument("--retry-after-s", type=float, default=1.0, help="rate_limit retry-after")
    parser.add_argument("--no-auth", action="store_true", help="do not require a bearer token")
    parser.add_argument("--record-limit", type=int, default=10_000, help="request log size")
    parser.add_argument("--keep-alive-s", type=float, default=75.0)
    parser.add_argument("--graceful-shutdown-s", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the mock until interrupted."""
    args = parse_args(argv)
    try:
        config = MockConfig(
            models=tuple(m.strip() for m in args.model_list.split(",") if m.strip()),
            ttft_ms=args.ttft_ms,
            inter_token_ms=args.inter_token_ms,
            tokens=args.tokens,
            fault_after=args.fault_after,
            retry_after_s=args.retry_after_s,
            require_auth=not args.no_auth,
            record_limit=args.record_limit,
        )
    except ValueError as exc:
        sys.exit(f"chorus-mock-openai: {exc}")
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"chorus-mock-openai listening on http://{shown_host}:{port}", flush=True)
    server = build_server(
        create_app(config),
        keep_alive_s=args.keep_alive_s,
        graceful_shutdown_s=args.graceful_shutdown_s,
    )
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
