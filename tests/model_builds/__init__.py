"""Tests of model_builds/: the scripts and question files behind the shipped models."""
