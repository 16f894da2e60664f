"""`python -m cvm210_assets.fake_cvm`: serve the demo CVM site until Ctrl-C."""

from __future__ import annotations

import argparse
import threading

from cvm210_assets.fake_cvm.demo_site import REGISTRY_PATH, publish_demo
from cvm210_assets.fake_cvm.server import FakeCvm


def main(argv: list[str] | None = None) -> None:
    """Serve the demo months so the pipeline can run end to end without the internet."""
    parser = argparse.ArgumentParser(
        prog="python -m cvm210_assets.fake_cvm", description="Fake dados.cvm.gov.br for demos."
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--funds", type=int, default=300, help="funds per generated month")
    args = parser.parse_args(argv)
    with FakeCvm(port=args.port) as fake:
        published = publish_demo(fake, n_funds=args.funds)
        for month, info in published.items():
            print(f"{month}  {info['path']}  layout ({info['layout']})  {info['rows']} rows")
        print(f"registry  {fake.url(REGISTRY_PATH)} (and cad_fi.csv beside it)")
        # Ctrl-C may come as soon as the URL is out (a script waits for that line).
        try:
            print(f"\nexport CVM210_SOURCE_URL={fake.base_url}", flush=True)
            print("Serving; Ctrl-C to stop.", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped")


if __name__ == "__main__":
    main()
