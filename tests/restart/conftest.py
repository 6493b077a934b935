"""tests/restart: see restart_harness.py. `make test-restart` runs it; `make test` does not."""
