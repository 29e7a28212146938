"""`python -m bench`: the same as `incidents bench`, for checkouts whose CLI lacks the verb."""

from bench.command import app

app(prog_name="python -m bench")
