"""The diarization stage: pipelines (the bundled one and pyannote's), the speaker embedding
models they use, overlap detection, and known speakers."""
