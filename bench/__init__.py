"""The performance harness: ``bash bench/run.sh`` (see bench/README.md). Not part of the test suite or CI."""
