"""``zoo plugins``: the installed plugins, the families and the generator kinds they register."""

from __future__ import annotations

import click

from zoo.cli.app import (
    cli,
    emit,
    json_option,
    table,
)


@cli.command()
@json_option
def plugins(as_json: bool) -> None:
    """List loaded plugins and the architecture families and generator kinds they provide."""
    from zoo.generators import generator_kinds
    from zoo.plugins import families, list_plugins

    infos = list_plugins()
    fams = families()
    kinds = generator_kinds()
    data = {
        "plugins": [
            {"name": p.name, "source": p.source, "module": p.module, "hooks": list(p.hooks), "error": p.error}
            for p in infos
        ],
        "families": {
            n: {"summary": f.summary, "variants": f.variants(), "plugin": type(f).__module__}
            for n, f in fams.items()
        },
        "generator_kinds": {
            n: {"description": k.description, "plugin": type(k).__module__} for n, k in kinds.items()
        },
    }

    def human() -> None:
        table(
            [
                [p.name, p.source, p.module, ", ".join(h.removeprefix("zoo_") for h in p.hooks) or p.error]
                for p in infos
            ],
            ["PLUGIN", "SOURCE", "MODULE", "HOOKS"],
        )
        click.echo("")
        table(
            [
                [n, f.summary, ", ".join(f.variants()[:6]) + (" ..." if len(f.variants()) > 6 else "")]
                for n, f in fams.items()
            ],
            ["FAMILY", "SUMMARY", "VARIANTS"],
        )
        if kinds:
            click.echo("")
            table(
                [[n, k.description, type(k).__module__] for n, k in kinds.items()],
                ["GENERATOR KIND", "DESCRIPTION", "PLUGIN"],
            )

    emit(data, as_json, human)
