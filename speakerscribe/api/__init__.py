"""The HTTP API without Ray: API keys, the upload form, error objects and event streams."""
