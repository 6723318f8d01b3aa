"""Transport and fast paths: the raw-ASGI completion routes' plumbing, the HTTP/1.1 client, SSE."""
