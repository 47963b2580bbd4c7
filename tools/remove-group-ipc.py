#!/usr/bin/env python3
"""Removes the POSIX queues and shared-memory segments of one dkc cluster GROUP that killed
processes left behind (a SIGKILLed process cannot unlink its own). Used by the bench scripts.

Usage: tools/remove-group-ipc.py GROUP
Names, as chmpx makes them: segment /dev/shm/dkc.GROUP.<...>; a chmpx's segment ends in
".chmpx" and has the accept queue /dkc.GROUP.<ctlport>.accept; an attachment's segment has
the queues <name>.up and <name>.dn.
"""

import ctypes
import os
import sys


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1]:
        print("usage: remove-group-ipc.py GROUP", file=sys.stderr)
        return 2
    rt = ctypes.CDLL("librt.so.1")
    prefix = "dkc.%s." % sys.argv[1]
    for name in os.listdir("/dev/shm"):
        if not name.startswith(prefix):
            continue
        if name.endswith(".chmpx"):
            queues = ["/" + name[: -len(".chmpx")] + ".accept"]
        else:
            queues = ["/" + name + ".up", "/" + name + ".dn"]
        for q in queues:
            rt.mq_unlink(q.encode())
        try:
            os.unlink("/dev/shm/" + name)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
