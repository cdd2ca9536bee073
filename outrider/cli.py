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
    parser.add_argument("--log-format", default=None,
                        help="log line pattern, Envoy's (spdlog) flags; default "
                             "'[%%Y-%%m-%%d %%T.%%e][%%t][%%l][%%n] [%%g:%%#] %%v'")
    parser.add_argument("--log-path", help="write logs to this file instead of stderr")
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
    from outrider.server import log_format

    try:
        log_format.configure(_LEVELS[args.log_level], args.log_format or log_format.DEFAULT_FORMAT,
                             args.log_path)
    except (log_format.UnknownFlag, OSError) as error:
        print(f"outrider: --log-format/--log-path: {error}", file=sys.stderr)
        return 1
    if not args.config_path:
        print("outrider: -c/--config-path is required", file=sys.stderr)
        return 1

    loaded = load_and_report(args.config_path, args.allow_unimplemented)
    if loaded is None:
        return 1
    if args.mode == "validate":
        print(f"configuration '{args.config_path}' OK")
        return 0
    return serve(loaded.bootstrap, args)


def load_and_report(config_path: str, allow_unimplemented: bool):
    """Load and check the config, printing every problem in one format to stderr.

    Returns the LoadedConfig to serve, without the listeners Outrider cannot serve (validate()
    warned about each by name), or None when the config has errors.
    """
    from outrider.config.errors import ConfigError
    from outrider.config.loader import load_bootstrap
    from outrider.config.validate import unservable_listeners, validate

    try:
        loaded = load_bootstrap(config_path)
    except ConfigError as error:
        issues = error.issues
    else:
        issues = validate(loaded, allow_unimplemented=allow_unimplemented)
    for issue in issues:
        print(issue, file=sys.stderr)
    errors = sum(issue.severity == "error" for issue in issues)
    if errors:
        print(f"configuration '{config_path}' is invalid: {errors} error(s)", file=sys.stderr)
        return None
    listeners = loaded.bootstrap.static_resources.listeners
    for index, _reason in reversed(unservable_listeners(loaded.bootstrap)):
        del listeners[index]  # validate() warned about each, by name
    return loaded


def serve(bootstrap, args) -> int:
    import uvloop

    from outrider.server.instance import Server, StartupError
    from outrider.server.limits import raise_open_files_limit
    from outrider.server.memory import tune_malloc

    tune_malloc()
    raise_open_files_limit()
    options = {"config_path": args.config_path, "concurrency": args.concurrency,
               "admin_address_path": args.admin_address_path}
    log = logging.getLogger("outrider")
    if args.concurrency > 1:
        log.warning("--concurrency %d: one worker runs (multi-process workers are not "
                    "implemented yet)", args.concurrency)
    server = Server(bootstrap, options)
    try:
        uvloop.run(server.serve())
    except StartupError as error:
        log.critical("error initializing configuration '%s': %s", args.config_path, error)
        return 1
    log.info("exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
