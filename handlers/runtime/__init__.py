"""The cross-cutting runtime: app factory, config, spec loading, error mapping per API,
authentication, rate limits, idempotency, request ids. Handlers stay free of it."""
