"""Tests of the dkeyserver, the dkeycache and their protocol."""
