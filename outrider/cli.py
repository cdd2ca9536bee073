"""``outrider -c envoy.yaml``: the command line, mirroring ``envoy``'s flags."""

from __future__ import annotations

import argparse
import logging
import os
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
    parser.add_argument("--concurrency", type=int, default=None,
                        help="worker processes (default: the number of CPUs, as Envoy); "
                             "1 runs everything in one process")
    parser.add_argument("--drain-time-s", type=int, default=600,
                        help="how long draining lasts (shutdown, /drain_listeners, reload of a "
                             "listener, upgrade)")
    parser.add_argument("--drain-strategy", choices=("gradual", "immediate"), default="gradual",
                        help="gradual: close keep-alive connections over the drain time; "
                             "immediate: after their next response")
    parser.add_argument("--parent-shutdown-time-s", type=int, default=900,
                        help="binary upgrade: the old process exits by then at the latest")
    parser.add_argument("--base-id", type=int, default=0,
                        help="keeps apart the hot-restart sockets of Outriders on one host")
    parser.add_argument("--admin-address-path", help="write the admin address to this file")
    parser.add_argument("--allow-unimplemented", action="store_true",
                        help="load configs that set fields Outrider does not implement "
                             "(they are reported as warnings and ignored)")
    parser.add_argument("--config-env-substitution", action="store_true",
                        help="replace ${VAR} and ${VAR:-default} in the config file from the "
                             "environment")
    parser.add_argument("--watch-config", action=argparse.BooleanOptionalAction, default=True,
                        help="reload when the config file changes (default: on)")
    parser.add_argument("--hot-restart-from", type=int, metavar="PID",
                        help="take over the listeners of the Outrider with this main process "
                             "pid, then let it drain (binary upgrade; SIGUSR2 does this)")
    parser.add_argument("--disable-hot-restart", action="store_true",
                        help="ignore SIGUSR2 (binary upgrade)")
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

    loaded = load_and_report(args.config_path, config_options(args))
    if loaded is None:
        return 1
    if args.mode == "validate":
        print(f"configuration '{args.config_path}' OK")
        return 0
    return serve(loaded.bootstrap, args, argv if argv is not None else sys.argv[1:])


def config_options(args):
    from outrider.config.checked import ConfigOptions

    return ConfigOptions(allow_unimplemented=args.allow_unimplemented,
                         env_substitution=args.config_env_substitution)


def load_and_report(config_path: str, options):
    """Load and check the config, printing every problem in one format to stderr.

    Returns the LoadedConfig to serve, without the listeners Outrider cannot serve (validate()
    warned about each by name), or None when the config has errors.
    """
    from outrider.config.checked import load_checked

    loaded, issues = load_checked(config_path, options)
    for issue in issues:
        print(issue, file=sys.stderr)
    if loaded is None:
        errors = sum(issue.severity == "error" for issue in issues)
        print(f"configuration '{config_path}' is invalid: {errors} error(s)", file=sys.stderr)
    return loaded


def serve(bootstrap, args, argv: list[str]) -> int:
    import uvloop

    from outrider.server.instance import Server, ServerOptions, StartupError
    from outrider.server.limits import raise_open_files_limit
    from outrider.server.log_format import DEFAULT_FORMAT
    from outrider.server.memory import tune_malloc

    tune_malloc()
    raise_open_files_limit()
    concurrency = args.concurrency or len(os.sched_getaffinity(0))
    if concurrency < 1:
        print("outrider: --concurrency must be at least 1", file=sys.stderr)
        return 1
    options = ServerOptions(
        config_path=args.config_path, concurrency=concurrency,
        drain_time=float(args.drain_time_s), drain_strategy=args.drain_strategy,
        parent_shutdown_time=float(args.parent_shutdown_time_s),
        config_options=config_options(args), admin_address_path=args.admin_address_path,
        watch_config=args.watch_config, hot_restart_from=args.hot_restart_from,
        hot_restart_enabled=not args.disable_hot_restart, base_id=args.base_id, argv=argv,
        worker_log_args=["--log-level", str(_LEVELS[args.log_level]),
                         "--log-format", args.log_format or DEFAULT_FORMAT,
                         *(["--log-path", args.log_path] if args.log_path else [])])
    server = Server(bootstrap, options)
    log = logging.getLogger("outrider")
    try:
        uvloop.run(server.serve())
    except StartupError as error:
        log.critical("error initializing configuration '%s': %s", args.config_path, error)
        return 1
    log.info("exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
