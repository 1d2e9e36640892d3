//! Fixtures for the end-to-end tests in `tests/tests/`: the whole shop started on the real host.
