"""The AsyncAPI document of the publisher, built from the default settings.

`app` is what `faststream docs gen publisher.asyncapi:app --yaml` loads;
`python -m publisher.asyncapi [PATH]` writes the same YAML without FastStream's CLI extra.
"""

from __future__ import annotations

import sys
from pathlib import Path

from publisher.app import build_app
from publisher.settings import PublisherSettings

DOCUMENT = Path(__file__).with_name("asyncapi.yaml")

# Defaults only, never the environment: the document must not depend on who generates it.
app = build_app(PublisherSettings())


def render() -> str:
    """The document as YAML, exactly as `faststream docs gen --yaml` writes it."""
    text: str = app.schema.to_specification().to_yaml()
    return text


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else DOCUMENT
    target.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
