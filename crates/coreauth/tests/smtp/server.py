"""An SMTP server for coreauth's mail tests (tests/mail/): PyPI's aiosmtpd on 127.0.0.1.

Usage: python server.py PORT DIR

Each message accepted is written to DIR as <nanoseconds>-<n>.eml, atomically (a temporary
file renamed into place), its envelope prepended as X-Envelope-From / X-Envelope-To headers.
A recipient whose local part starts with "reject" is refused with a permanent 550, one starting
with "later" with a transient 451. Prints "ready" once it listens; stops on SIGTERM or when
its standard input closes (the test that started it is gone).
"""

import asyncio
import itertools
import os
import signal
import sys
import time

from aiosmtpd.controller import Controller

counter = itertools.count()


class Recorder:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        if local.startswith("later"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        head = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content
        name = f"{time.time_ns()}-{next(counter)}.eml"
        staging = os.path.join(self.directory, "." + name + ".tmp")
        with open(staging, "wb") as f:
            f.write(head + content)
        os.rename(staging, os.path.join(self.directory, name))
        return "250 Message accepted"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Recorder(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read(1) or stop.set())
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
