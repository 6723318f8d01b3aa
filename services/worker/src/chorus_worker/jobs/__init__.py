"""The worker's jobs: plain ``async def job(ctx, ...)`` functions, one module per concern."""
