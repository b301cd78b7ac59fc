"""``manta-mqtt keygen``: the swarm owner's signing key, and the line nodes need to trust it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
def keygen(key_file: Path) -> None:
    """Create an Ed25519 signing key in KEY_FILE (mode 0600) and its public key in KEY_FILE.pub.

    The coordinator signs assignments with it (manta-mqtt run --signing-key KEY_FILE); each node
    lists the public key under [trust] keys in its node.toml, and runs nothing else.
    """
    from ..protocol.signing import OwnerKey

    key = OwnerKey.generate()
    try:
        public = key.save(key_file)
    except FileExistsError as exc:
        raise click.ClickException(f"{key_file} exists: not overwriting a signing key") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {key_file}: {exc.strerror or exc}") from exc
    click.echo(f"signing key {key.id} written to {key_file} (keep it secret; it is not a broker password)")
    click.echo(f"public key written to {public}; in each node's node.toml:\n")
    click.echo("[trust]")
    click.echo(f'keys = ["{public.read_text().strip()}"]')
