"""Tests of ui/: real Qt widgets, offscreen."""
