"""``manage.py simulate_fleet --tenants N --agents M``: SDK agents against a running console."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet.simulator import build_fleet, read_tokens


class Command(BaseCommand):
    help = (
        "Run simulated agents (the real SDK, over HTTP and sockets) against a running console. "
        "Tokens come from --token-file ('<tenant> <token>' lines, as seed_demo writes) or --token."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=f"http://127.0.0.1:{settings.L10.port}", help="the console's base URL")
        parser.add_argument("--tenants", type=int, default=None, help="how many tenants (default: every token given)")
        parser.add_argument("--agents", type=int, default=12, help="agents per tenant (default 12)")
        parser.add_argument("--token-file", default=str(settings.BASE_DIR / "var" / "demo-tokens.txt"))
        parser.add_argument("--token", action="append", default=[], help="a tenant API token (repeatable)")
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable fleet")
        parser.add_argument("--crash-rate", type=float, default=0.002, help="chance per task that an agent crashes")
        parser.add_argument("--task-seconds", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"))

    def handle(self, *args: Any, **options: Any) -> None:
        tokens = [(f"token-{i + 1}", t) for i, t in enumerate(options["token"])]
        path = Path(options["token_file"])
        if not tokens:
            if not path.exists():
                raise CommandError(f"No tokens: {path} does not exist. Run `manage.py seed_demo --token-file {path}`.")
            tokens = read_tokens(path)
        wanted = options["tenants"] or len(tokens)
        if wanted > len(tokens):
            raise CommandError(f"--tenants {wanted} asks for more tenants than the {len(tokens)} token(s) given.")
        if options["agents"] < 1:
            raise CommandError("--agents must be at least 1.")
        logging.getLogger("l10_agent").setLevel(logging.ERROR)
        logging.getLogger("httpx").setLevel(logging.WARNING)

        fleet = build_fleet(
            options["url"],
            tokens[:wanted],
            options["agents"],
            seed=options["seed"],
            crash_rate=options["crash_rate"],
            task_seconds=tuple(options["task_seconds"]),
        )
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        fleet.start()
        self.stdout.write(
            f"Simulating {len(fleet.agents)} agents in {wanted} tenant(s) against {options['url']}; Ctrl-C stops."
        )
        deadline = None if options["duration"] is None else time.monotonic() + options["duration"]
        while not done.wait(1.0):
            if deadline is not None and time.monotonic() >= deadline:
                break
        self.stdout.write("Stopping the simulated fleet…")
        fleet.shutdown()
        tasks = sum(a.tasks_done for a in fleet.agents)
        self.stdout.write(f"Done: {tasks} tasks, {sum(a.crashes for a in fleet.agents)} crashes.")
