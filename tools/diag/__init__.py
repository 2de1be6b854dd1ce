"""Diagnostics for installers and maintainers: boards, status, log, test-channel."""
