"""The transcription pipeline without Ray: a request's audio decoded, separated, chunked,
fanned out to the stages, and merged into one result."""
