"""ehsm-kms."""
