"""Tests of cli/: the headless commands and `serve`, run as a user runs them."""
