"""Model servers on the command line: `--server` on ask and eval, `server` to set one up
(connect, test, disconnect), and `serve`, which makes this Quire a server for other tools."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cli import api
from engine.answer.remote import (
    KEY_ENV,
    PRESETS,
    Server,
    list_models,
    load_key,
    normalize_url,
    save_key,
)
from engine.core import Engine
from engine.types import UserError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("server", parents=[common], help="answer with a model server (Ollama, …)")
    actions = p.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    c = actions.add_parser(
        "connect", parents=[common], help="answer with this server from now on (settings)"
    )
    c.add_argument("url", metavar="URL", help="base URL, e.g. " + PRESETS["Ollama"])
    c.add_argument("--model", help="the server's model (default: the first it lists)")
    c.add_argument("--key-stdin", action="store_true", help="read an API key from stdin")
    c.set_defaults(handler=cmd_server_connect)
    t = actions.add_parser("test", parents=[common], help="list a server's models")
    t.add_argument("url", nargs="?", metavar="URL", help="default: the connected server")
    t.set_defaults(handler=cmd_server_test)
    d = actions.add_parser("disconnect", parents=[common], help="answer with the local model")
    d.add_argument("--forget-key", action="store_true", help="also delete the stored API key")
    d.set_defaults(handler=cmd_server_disconnect)

    p = sub.add_parser("serve", parents=[common], help="an OpenAI-compatible API on this machine")
    p.add_argument("--port", type=int, default=api.DEFAULT_PORT, help="default: %(default)s")
    p.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: loopback only; 0.0.0.0 opens it to the network)",
    )  # fmt: skip
    p.add_argument(
        "--api-key-env", metavar="VAR",
        help="require this environment variable's value as the clients' API key",
    )  # fmt: skip
    add_server_options(p)
    p.set_defaults(handler=cmd_serve)


def add_server_options(p: argparse.ArgumentParser) -> None:
    """`--server URL [--server-model NAME]`: a model server answers, for this command only."""
    p.add_argument(
        "--server", metavar="URL",
        help="answer with an OpenAI-compatible model server, e.g. http://127.0.0.1:11434/v1 "
        f"(API key: ${KEY_ENV} or `server connect --key-stdin`); default: settings",
    )  # fmt: skip
    p.add_argument("--server-model", metavar="NAME", help="the server's model (default: its first)")
    p.add_argument("--local", action="store_true", help="answer with the local model, not a server")


def open_engine(args: argparse.Namespace) -> Engine:
    """The engine over `--data-dir`, with `--server`/`--local` applied for this command."""
    engine = Engine(getattr(args, "data_dir", None))
    engine.llms.on_merge = _merge_note
    configure(engine, args)
    return engine


def configure(engine: Engine, args: argparse.Namespace) -> None:
    """This command's --local / --server / --server-model, not saved."""
    if getattr(args, "local", False):
        engine.update_settings(save=False, server_url=None)
    if getattr(args, "server", None):
        url = normalize_url(args.server)
        engine.update_settings(save=False, server_url=url, server_model=args.server_model)
    elif getattr(args, "server_model", None):
        if not engine.settings.server_url:
            raise UserError("--server-model needs --server URL (or a connected server)")
        engine.update_settings(save=False, server_model=args.server_model)


def _merge_note(done: int, total: int) -> None:
    """Progress of the one-time merge of the grounding adapter into the model, on stderr."""
    if done == 1:
        sys.stderr.write("Preparing the grounded model (first use only, under a minute)…\n")
    elif done == total:
        sys.stderr.write("Grounded model ready.\n")


# -- server connect / test / disconnect ----------------------------------------------


def cmd_server_connect(args: argparse.Namespace) -> int:
    engine = Engine(getattr(args, "data_dir", None))
    url = normalize_url(args.url)
    key = sys.stdin.readline().strip() if args.key_stdin else load_key(engine.data_dir)
    models = list_models(Server(url, None, key, engine.settings.server_timeout))
    if args.model and args.model not in models:
        raise UserError(f"{url} has no model '{args.model}'; it has: {', '.join(models)}")
    model = args.model or (models[0] if models else None)
    if args.key_stdin:
        save_key(engine.data_dir, key)
    engine.update_settings(server_url=url, server_model=model)
    print(f"Answers now come from {model} at {url} (modes base and rag).", file=sys.stderr)
    return 0


def cmd_server_test(args: argparse.Namespace) -> int:
    engine = Engine(getattr(args, "data_dir", None))
    url = args.url or engine.settings.server_url
    if not url:
        raise UserError("no server connected; name one: server test URL")
    server = Server(normalize_url(url), None, load_key(engine.data_dir))
    for model in list_models(server):
        print(model)
    return 0


def cmd_server_disconnect(args: argparse.Namespace) -> int:
    engine = Engine(getattr(args, "data_dir", None))
    engine.update_settings(server_url=None, server_model=None)
    if args.forget_key:
        save_key(engine.data_dir, None)
    print("Answers now come from the local model.", file=sys.stderr)
    return 0


# -- serve ----------------------------------------------------------------------------


def _check_free(host: str, port: int) -> None:
    """One clear line for a port in use or an address this machine does not have."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc


def cmd_serve(args: argparse.Namespace) -> int:
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UserError(f"${args.api_key_env} is empty or not set; it holds the API key")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: a port is 0 to 65535")
    if not api.is_loopback(args.host):
        print(
            f"Listening on {args.host}: other machines on the network can reach this API"
            + ("" if key else " (and no API key is set)")
            + ".",
            file=sys.stderr,
        )

    _check_free(args.host, args.port)

    def ready(address: str) -> None:
        print(f"Quire serves on {address} (Ctrl+C stops).", file=sys.stderr, flush=True)

    api.serve(args.data_dir, args.host, args.port, key, lambda e: configure(e, args), ready)
    return 0
