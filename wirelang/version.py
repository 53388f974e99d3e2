"""Versions: of the package, and of the .wire language it reads and writes."""

__version__ = "0.1.0"
# Bumped when a spec that was valid could change meaning or stop parsing. Recorded in generated
# artifacts and checkpoints so a result can always be traced to the language that produced it.
LANGUAGE_VERSION = 1
