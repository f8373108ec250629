"""The optional HTTP listener: /healthz and /metrics (starlette, served by uvicorn in a
thread of the daemon). Extra routes (webhooks) plug into the same app."""
