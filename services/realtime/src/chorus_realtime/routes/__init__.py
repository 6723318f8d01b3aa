"""HTTP and WebSocket routes (thin: validate, call domain, map errors)."""
