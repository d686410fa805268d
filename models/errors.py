"""The one exception every layer shows as a line, in the lowest module of Quire.

`models` is the bottom layer (model files, downloads, adapter conversion): it imports
nothing of `engine` or `ui`, so the error both of them raise lives here.
`engine.types` re-exports it; engine and ui code import it from there.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment: shown as one line, never a traceback."""
