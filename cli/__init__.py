"""The headless command line and `serve`: argparse commands over the engine. No Qt."""
