"""Transport and fast paths: the WebSocket protocol and writers, and the pub/sub RESP client."""
