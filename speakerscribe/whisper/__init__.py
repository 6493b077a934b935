"""The Whisper stage: model loading, batched decoding of pieces, packing short pieces into
shared windows, and the estimate the Transcriber batches by."""
