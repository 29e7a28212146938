"""`incidents bench`: the benchmarks of bench/ (issue 15's table). The bench package lives in
the repository, not in the wheel: the verb runs from a checkout (`uv run incidents bench`)."""

import importlib.util

import typer

from services.cli.options import fail


def register(app: typer.Typer) -> None:
    @app.command(
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],  # --help is the bench's own, with its options
        },
    )
    def bench(ctx: typer.Context) -> None:
        """Run every benchmark of issue 15's table (from a checkout; `incidents bench --help`)."""
        # Imported here, and only here: the bench pulls in the whole service stack.
        if importlib.util.find_spec("bench") is None:
            fail(
                "the bench package is not installed with incidents: run it from a checkout "
                "(`uv run incidents bench`)",
                code=1,
            )
        from bench.command import app as bench_app

        bench_app(ctx.args, prog_name="incidents bench")
