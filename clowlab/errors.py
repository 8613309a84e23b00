"""One exception type for user mistakes.

Anything a user can fix (a missing file, a wrong column, a tokenizer that does not match the
model, a malformed config) raises `ClowlabError` with one sentence saying what is wrong, naming
the file or key, and one saying what to do. Entry points print its message without a traceback.
"""


class ClowlabError(ValueError):
  """A user-actionable error; the message names the thing and the fix."""
