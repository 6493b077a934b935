"""Test and benchmark helpers, not shipped with the server: scoring (WER, DER, files of
references) and random Whisper models for throughput runs where no weights can be fetched."""
