"""A main app stand-in: says it is up, then waits to be stopped like a server would."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("app: up", flush=True)
while True:
    time.sleep(60)
