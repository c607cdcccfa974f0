"""The errors a user sees as one line: bad input (naming the file, and record or line) and a failed run."""


class InputError(Exception):
    """Bad input a user can fix. `str()` is the one line printed before exiting with status 2."""

    def __init__(self, path, problem: str, *, record: int | None = None, line: int | None = None):
        where = str(path)
        if record is not None:
            where += f": record {record}"
        if line is not None:
            where += f": line {line}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.problem = problem
        self.record = record
        self.line = line


class RunError(Exception):
    """A run that failed for a reason other than bad input (a lost worker). `str()` is the one line printed
    before exiting with status 1."""
