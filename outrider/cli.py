"""``outrider -c envoy.yaml``: the command line, mirroring ``envoy``'s flags."""

from __future__ import annotations

import argparse
import logging
import sys

from outrider import __version__

_LEVELS = {
    "trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
    "warning": logging.WARNING, "warn": logging.WARNING, "error": logging.ERROR,
    "critical": logging.CRITICAL, "off": logging.CRITICAL + 10,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outrider", description="An Envoy-compatible L7 proxy that reads Envoy's v3 YAML.")
    parser.add_argument("-c", "--config-path", help="Envoy v3 bootstrap (.yaml, .yml or .json)")
    parser.add_argument("--mode", choices=("serve", "validate"), default="serve")
    parser.add_argument("-l", "--log-level", choices=sorted(_LEVELS), default="info")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="worker count (accepted; one worker until multi-process lands)")
    parser.add_argument("--base-id", type=int, default=0, help="accepted for compatibility")
    parser.add_argument("--admin-address-path", help="write the admin address to this file")
    parser.add_argument("--allow-unimplemented", action="store_true",
                        help="load configs that set fields Outrider does not implement "
                             "(they are reported as warnings and ignored)")
    parser.add_argument("--version", action="version", version=f"outrider version: {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=_LEVELS[args.log_level], stream=sys.stderr,
                        format="[%(asctime)s][%(levelname)s][%(name)s] %(message)s")
    if not args.config_path:
        print("outrider: -c/--config-path is required", file=sys.stderr)
        return 1

    from outrider.config.errors import ConfigError
    from outrider.config.loader import load_bootstrap
    from outrider.config.validate import validate

    try:
        loaded = load_bootstrap(args.config_path)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    issues = validate(loaded, allow_unimplemented=args.allow_unimplemented)
    for issue in issues:
        print(issue, file=sys.stderr)
    errors = [i for i in issues if i.severity == "error"]
    if args.mode == "validate":
        if errors:
            print(f"configuration '{args.config_path}' is invalid: {len(errors)} error(s)",
                  file=sys.stderr)
            return 1
        print(f"configuration '{args.config_path}' OK")
        return 0
    if errors:
        return 1
    return serve(loaded.bootstrap, args)


def serve(bootstrap, args) -> int:
    import uvloop

    from outrider.server.instance import Server
    from outrider.server.limits import raise_open_files_limit
    from outrider.server.memory import tune_malloc

    tune_malloc()
    raise_open_files_limit()
    options = {"config_path": args.config_path, "concurrency": args.concurrency,
               "admin_address_path": args.admin_address_path}
    server = Server(bootstrap, options)
    try:
        uvloop.run(server.serve())
    except OSError as error:
        logging.getLogger("outrider").error("cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
