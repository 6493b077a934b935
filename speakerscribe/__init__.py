"""speakerscribe: who said what and when, behind an OpenAI-compatible API.

Everything in this package is plain Python (no Ray): audio decoding, chunking,
word-to-speaker alignment, output formats, request/response models, errors,
settings and model loading. The Ray Serve deployments in ``deployments/`` are
thin wrappers around it.
"""
