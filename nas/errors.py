"""The errors nas reports to its users, and the exit code of each.

Bad input (a file, a flag, a value) is an `InputError`: the CLI prints its one-line message and
exits with 2. A search that cannot go on (too many failed children) is a `SearchStopped`: exit 3.
Errors inside a child are not exceptions here: a failed trial is a recorded status.
"""

from search_spaces import SpaceError


class InputError(ValueError):
    """Bad user input; the message names the file, field or value and what was expected."""

    exit_code = 2


class SearchStopped(RuntimeError):
    """The search stopped before its budget; what finished is on disk."""

    exit_code = 3


class SearchInterrupted(SearchStopped):
    """Ctrl-C (SIGINT) stopped the search; what finished is on disk."""

    exit_code = 130


class ExportFailed(RuntimeError):
    """An export whose converted file does not answer as the Keras model does; nothing is written."""

    exit_code = 3


USER_ERRORS = (InputError, SpaceError)

# Seeds run from 0 to this: children are seeded with seed + trial number, which NumPy and
# scikit-learn take up to 2**32 - 1.
MAX_SEED = 2**31 - 1
