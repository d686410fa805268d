"""Tests of models/: model files, downloads, adapter conversion and merging."""
